//! What a server's refusal says, said plainly: the HTTP status, S3's error code and message and what to
//! check, without the request line and raw XML that `object_store` repeats at each level of its errors.

use super::BoxError;

/// A server's refusal said plainly: `object_store` reports an HTTP error with the request, its timing and
/// the raw XML body, repeated at each level of the error chain. This keeps what the operator needs — the
/// status, S3's error code and message, and what to check — and leaves an error without an HTTP answer
/// (a connection refused, a timeout) as it was.
pub fn describe(e: BoxError) -> BoxError {
    match refusal(&chain(&*e)) {
        Some(text) => text.into(),
        None => e,
    }
}

/// What [`describe`] says for a chain of error messages holding an HTTP status, if it holds one.
fn refusal(chain: &str) -> Option<String> {
    let at = chain.find("status code: ")? + "status code: ".len();
    let status: u16 = chain.get(at..at + 3)?.parse().ok()?;
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = chain.find(&open)? + open.len();
        let end = chain[start..].find(&format!("</{name}>"))? + start;
        Some(chain[start..end].trim().to_string())
    };
    let code = tag("Code").unwrap_or_default();
    let message = tag("Message").unwrap_or_default();
    let answer = match (code.is_empty(), message.is_empty()) {
        (true, _) => format!("HTTP {status}"),
        (false, true) => format!("HTTP {status} {code}"),
        (false, false) => format!("HTTP {status} {code}: {message}"),
    };
    let said = match code.as_str() {
        "InvalidAccessKeyId"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "InvalidToken"
        | "TokenRefreshRequired"
        | "InvalidSecurity" => format!(
            "the server refused the credentials ({answer}); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or their _FILE variables), AWS_SESSION_TOKEN, or the AWS_PROFILE in use"
        ),
        "AccessDenied" | "AllAccessDisabled" => format!(
            "the server denied access ({answer}): these credentials may not use this bucket or prefix"
        ),
        "NoSuchBucket" => format!("the bucket does not exist ({answer})"),
        "QuotaExceeded"
        | "StorageQuotaExceeded"
        | "XMinioStorageFull"
        | "XMinioAdminBucketQuotaExceeded"
        | "InsufficientStorage"
        | "StorageFull" => {
            format!(
                "the bucket's storage or quota is full ({answer}); nothing was stored under the final name"
            )
        }
        _ if status == 507 => {
            format!("the server has no room ({answer}); nothing was stored under the final name")
        }
        // A HEAD has no body to say which: wrong keys or keys without the right.
        _ if status == 401 || status == 403 => format!(
            "the server refused the credentials or what they may do ({answer}); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or their _FILE variables), AWS_SESSION_TOKEN, the AWS_PROFILE in use, and that they may use this bucket"
        ),
        // The server's own failure (S3's InternalError, a proxy's 502–504, a server out of disk space):
        // nothing the request could change; what was sent is not kept under the backup's name.
        _ if (500..600).contains(&status) => format!(
            "the server failed ({answer}): it may be out of storage or unwell; nothing was stored under the final name, so sending again later is safe"
        ),
        _ => format!("the server answered {answer}"),
    };
    Some(said)
}

/// An error's chain of messages, a server's refusal said as [`describe`] says it.
pub(super) fn said(e: &dyn std::error::Error) -> String {
    let c = chain(e);
    refusal(&c).unwrap_or(c)
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let c_s = c.to_string();
        if !s.contains(&c_s) {
            s.push_str(": ");
            s.push_str(&c_s);
        }
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What object_store printed for a listing with an unknown access key (moto's answer, as AWS gives
    /// it), and for a bucket over its quota (MinIO's code).
    #[test]
    fn a_refusal_is_said_without_the_request_or_the_xml() {
        let body = |code: &str, msg: &str| {
            format!(
                "Error performing GET http://127.0.0.1:5055/bkt1?delimiter=%2F&list-type=2&prefix=app%2F in 39ms - Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Error><Code>{code}</Code><Message>{msg}</Message><BucketName>bkt1</BucketName><RequestId>9J9L</RequestId></Error>"
            )
        };
        let said = refusal(&body(
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
        ))
        .unwrap();
        assert_eq!(
            said,
            "the server refused the credentials (HTTP 403 InvalidAccessKeyId: The AWS Access Key Id you provided does not exist in our records.); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or their _FILE variables), AWS_SESSION_TOKEN, or the AWS_PROFILE in use"
        );
        let denied = refusal(&body("AccessDenied", "Access Denied")).unwrap();
        assert!(
            denied.starts_with("the server denied access (HTTP 403 AccessDenied"),
            "{denied}"
        );
        let full = refusal(&body(
            "XMinioAdminBucketQuotaExceeded",
            "Bucket quota exceeded",
        ))
        .unwrap();
        assert!(
            full.starts_with("the bucket's storage or quota is full"),
            "{full}"
        );
        let bare =
            refusal("Server returned non-2xx status code: 507 Insufficient Storage: ").unwrap();
        assert_eq!(
            bare,
            "the server has no room (HTTP 507); nothing was stored under the final name"
        );
        let head = refusal(
            "Error performing HEAD http://127.0.0.1:5055/b/k in 3ms - Server returned non-2xx status code: 403 Forbidden: ",
        )
        .unwrap();
        assert!(
            head.starts_with("the server refused the credentials or what they may do (HTTP 403); check AWS_ACCESS_KEY_ID"),
            "{head}"
        );
        // A server that failed on its own (moto out of disk space answers with an HTML page).
        let failed = refusal(
            "Error performing PUT http://127.0.0.1:5055/b/k?partNumber=1 in 9ms - Server returned non-2xx status code: 500 Internal Server Error: <!doctype html><title>500 Internal Server Error</title>",
        )
        .unwrap();
        assert_eq!(
            failed,
            "the server failed (HTTP 500): it may be out of storage or unwell; nothing was stored under the final name, so sending again later is safe"
        );
        assert_eq!(
            refusal("error sending request: Connection refused (os error 111)"),
            None
        );
    }
}
