mod browser;
mod lossy;
mod robustness;
mod whip_whep;
