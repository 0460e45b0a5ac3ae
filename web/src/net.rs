//! The client's network address, wrapped so it can only be logged redacted.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use tongxin_common::Pii;

/// The peer address of the connection, when the server knows it.
#[derive(Debug, Clone)]
pub struct ClientAddr(pub Option<IpAddr>);

impl ClientAddr {
    /// The address for logs: a fingerprint, never the address.
    pub fn pii(&self) -> Pii<String> {
        Pii::new(self.0.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())))
    }
}
