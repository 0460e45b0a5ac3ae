mod browser;
mod lossy;
mod robustness;
mod rooms;
mod whip_whep;
