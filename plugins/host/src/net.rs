//! The outbound-HTTP allow-list. The check is on the URL's own host and port
//! (never a header), the name is resolved here, and the request goes to the
//! address resolved here, so what was checked is what is reached.

use std::net::SocketAddr;

pub struct Destination {
    pub addr: SocketAddr,
    /// The name to verify the certificate against (https only).
    pub tls_name: Option<String>,
}

/// Check `url` against `allowed` (`host` or `host:port` entries; a bare host
/// allows the scheme's default port only) and resolve it. `list` names the
/// list in a refusal (`this plugin's allow-list`).
pub async fn check_destination(
    url: &str,
    allowed: &[String],
    list: &str,
) -> Result<Destination, String> {
    let u = url::Url::parse(url).map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    let https = match u.scheme() {
        "http" => false,
        "https" => true,
        s => return Err(format!("scheme {s:?} is not allowed (http or https)")),
    };
    if !u.username().is_empty() || u.password().is_some() {
        return Err("credentials in the URL are not allowed".into());
    }
    let host = match u.host() {
        Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => format!("[{a}]"),
        None => return Err(format!("URL {url:?} has no host")),
    };
    let port = u
        .port_or_known_default()
        .unwrap_or(if https { 443 } else { 80 });
    let default_port = u.port().is_none() || Some(port) == u.port_or_known_default();
    let permitted = allowed.iter().any(|a| {
        let a = a.to_ascii_lowercase();
        a == format!("{host}:{port}") || (a == host && default_port && u.port().is_none())
    });
    if !permitted {
        return Err(format!(
            "{host}:{port} is not on {list}{}",
            if allowed.is_empty() {
                " (the list is empty: all outbound HTTP is denied)"
            } else {
                ""
            }
        ));
    }
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let addr = tokio::net::lookup_host((bare.as_str(), port))
        .await
        .map_err(|e| format!("resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    Ok(Destination {
        addr,
        tls_name: https.then_some(bare),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "this plugin's allow-list";

    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn only_listed_hosts_and_ports_pass() {
        let allowed = list(&["127.0.0.1:8080", "localhost"]);
        let d = check_destination("http://127.0.0.1:8080/hook", &allowed, LIST)
            .await
            .unwrap();
        assert_eq!(d.addr, "127.0.0.1:8080".parse().unwrap());
        assert!(check_destination("http://localhost/x", &allowed, LIST)
            .await
            .is_ok());
        for bad in [
            "http://127.0.0.1:8081/",
            "http://localhost:8080/",
            "http://10.0.0.1:8080/",
            "ftp://localhost/",
            "http://user:pw@localhost/",
            "http://127.0.0.1:8080@evil.example/",
        ] {
            assert!(
                check_destination(bad, &allowed, LIST).await.is_err(),
                "{bad} passed"
            );
        }
    }

    #[tokio::test]
    async fn an_empty_list_denies_everything() {
        let e = check_destination("http://127.0.0.1/", &[], LIST)
            .await
            .err()
            .unwrap();
        assert!(e.contains("all outbound HTTP is denied"), "{e}");
    }
}
