//! The TLS configuration and the `authorization: Bearer` header of a
//! client, applied to every connection: one interceptor on the channel
//! covers unary calls, long-polls and the Watch stream alike, for the
//! Lock and the Cluster services.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Channel, ClientTlsConfig};
use tonic::{Request, Status};

use crate::credentials::{Credentials, Token};
use crate::Error;

/// A connection as the services use it: the channel, with the token added.
pub(crate) type Conn = InterceptedService<Channel, Bearer>;

/// Adds `authorization: Bearer <token>` to each request, or nothing when
/// the client has no token. The value is marked sensitive, so a Debug
/// print of the metadata does not show it.
#[derive(Clone, Default)]
pub(crate) struct Bearer {
    header: Option<MetadataValue<Ascii>>,
}

impl Bearer {
    pub fn new(token: Option<&Token>) -> Result<Bearer, Error> {
        let Some(token) = token else {
            return Ok(Bearer::default());
        };
        // The error must not repeat the value: it holds the token.
        let mut header: MetadataValue<Ascii> =
            format!("Bearer {}", token.expose()).parse().map_err(|_| {
                Error::Credentials(
                    "the auth token holds characters a header cannot carry (not a raftlock token?)"
                        .into(),
                )
            })?;
        header.set_sensitive(true);
        Ok(Bearer {
            header: Some(header),
        })
    }

    /// `channel` with this header on every call.
    pub fn on(&self, channel: Channel) -> Conn {
        InterceptedService::new(channel, self.clone())
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}

/// The checked TLS configuration for `credentials`; a CA, certificate or
/// key file that cannot be used is named in the error. The server name
/// checked is the host of each endpoint dialled.
pub(crate) fn tls_config(credentials: &Credentials) -> Result<ClientTlsConfig, Error> {
    let identity = credentials
        .identity
        .as_ref()
        .map(|(cert, key)| (cert.as_path(), key.as_path()));
    raftlock_tls::client_tls(&credentials.ca, identity, None).map_err(|e| {
        Error::Credentials(format!(
            "cannot use the TLS files (--ca, --cert, --key): {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_carries_the_token_and_no_print_shows_it() {
        let mut bearer = Bearer::new(Some(&Token::new("rlt_secret"))).unwrap();
        let request = bearer.call(Request::new(())).unwrap();
        let header = request.metadata().get("authorization").unwrap();
        assert_eq!(header.to_str().unwrap(), "Bearer rlt_secret");
        let shown = format!("{:?}", request.metadata());
        assert!(!shown.contains("rlt_secret"), "{shown}");
        let mut none = Bearer::default();
        let request = none.call(Request::new(())).unwrap();
        assert!(request.metadata().get("authorization").is_none());
    }

    #[test]
    fn a_token_no_header_can_carry_is_refused_without_repeating_it() {
        let error = Bearer::new(Some(&Token::new("rlt_\nsecret")))
            .err()
            .unwrap();
        assert!(matches!(error, Error::Credentials(_)));
        assert!(!error.to_string().contains("secret"), "{error}");
    }
}
