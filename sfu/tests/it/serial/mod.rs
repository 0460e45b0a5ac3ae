mod whip_whep;
