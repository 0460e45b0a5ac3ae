mod browser;
mod robustness;
mod whip_whep;
