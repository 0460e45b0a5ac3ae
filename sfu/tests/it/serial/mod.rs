mod browser;
mod lossy;
mod robustness;
mod rooms;
mod tcp;
mod weak_link;
mod whip_whep;
