mod browser;
mod lossy;
mod robustness;
mod rooms;
mod tcp;
mod whip_whep;
