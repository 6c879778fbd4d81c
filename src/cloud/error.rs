//! Typed cloud errors and the classification of every `Response.Error.Code`.
//!
//! Each code maps to a retry class (how the client reacts) and a [`Kind`] (what the user
//! is told, with the fix). Unlisted codes are permanent.

use std::fmt;

/// How the client reacts to an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Retry with jittered backoff, a bounded number of times.
    Retry,
    /// Retry once only.
    RetryOnce,
    /// Refresh temporary credentials, then retry once.
    RefreshCredentials,
    /// Correct the clock offset from the response `Date`, re-sign once.
    ClockSkew,
    /// Report to the user; never retried.
    Permanent,
}

/// What an API error means to the person at the viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The API rate limit was hit.
    RateLimited,
    /// The service is temporarily unavailable.
    Unavailable,
    /// An internal error at Tencent Cloud.
    Internal,
    /// Temporary credentials rejected or SecretId unknown.
    CredentialsRejected,
    /// The signature did not verify.
    SignatureRejected,
    /// The request timestamp is too far from the server's clock.
    ClockSkew,
    /// The identity cannot call the API at all.
    CredentialsCannotCall,
    /// CAM denies the action.
    AccessDenied,
    /// The instance id has the wrong form.
    MalformedInstanceId,
    /// No such instance for this account and region.
    InstanceNotFound,
    /// The instance is not running.
    InstanceState,
    /// Another operation on the instance is in progress.
    OperationInProgress,
    /// This instance type has no VNC.
    NotSupported,
    /// The cloud refused for an account or quota reason.
    Refused,
    /// The request itself is wrong (region, endpoint, product, or a tcvnc bug).
    RequestRejected,
}

/// Every code the reference lists: metrics label these by name, anything else as `other`.
pub(crate) const KNOWN_CODES: &[&str] = &[
    "ActionOffline",
    "AuthFailure.InvalidAuthorization",
    "AuthFailure.InvalidSecretId",
    "AuthFailure.MFAFailure",
    "AuthFailure.SecretIdNotFound",
    "AuthFailure.SignatureExpire",
    "AuthFailure.SignatureFailure",
    "AuthFailure.TokenFailure",
    "AuthFailure.UnauthorizedOperation",
    "DryRunOperation",
    "FailedOperation",
    "FailedOperation.InstanceOperationFailed",
    "InternalError",
    "InternalError.DescribeInstanceStatus",
    "InvalidAction",
    "InvalidInstance.NotSupported",
    "InvalidInstanceId.Malformed",
    "InvalidInstanceId.NotFound",
    "InvalidInstanceState",
    "InvalidParameter",
    "InvalidParameterValue",
    "InvalidParameterValue.InstanceIdMalformed",
    "InvalidRequest",
    "IpInBlacklist",
    "IpNotInWhitelist",
    "LimitExceeded",
    "MissingParameter",
    "NoSuchProduct",
    "NoSuchVersion",
    "OperationDenied.InstanceCreating",
    "OperationDenied.InstanceOperationInProgress",
    "RequestLimitExceeded",
    "RequestLimitExceeded.GlobalRegionUinLimitExceeded",
    "RequestLimitExceeded.IPLimitExceeded",
    "RequestLimitExceeded.UinLimitExceeded",
    "RequestSizeLimitExceeded",
    "ResourceInUse",
    "ResourceInsufficient",
    "ResourceNotFound",
    "ResourceNotFound.InstanceIdNotFound",
    "ResourceNotFound.InstanceNotFound",
    "ResourceUnavailable",
    "ResponseSizeLimitExceeded",
    "ServiceUnavailable",
    "UnauthorizedOperation",
    "UnauthorizedOperation.MFAExpired",
    "UnauthorizedOperation.MFANotFound",
    "UnknownParameter",
    "UnsupportedOperation",
    "UnsupportedOperation.InvalidInstanceState",
    "UnsupportedOperation.LatestOperationUnfinished",
    "UnsupportedOperation.SpecialInstanceType",
    "UnsupportedOperation.StoppedModeStopCharging",
    "UnsupportedProtocol",
    "UnsupportedRegion",
];

/// Classifies an error code. `temporary` says whether the request used temporary
/// credentials (with a session token): only those can be fixed by a refresh.
pub(crate) fn classify(code: &str, temporary: bool) -> (Class, Kind) {
    use Class::*;
    use Kind::*;
    let refresh_or_fail = if temporary {
        RefreshCredentials
    } else {
        Permanent
    };
    match code {
        "RequestLimitExceeded"
        | "RequestLimitExceeded.UinLimitExceeded"
        | "RequestLimitExceeded.GlobalRegionUinLimitExceeded"
        | "RequestLimitExceeded.IPLimitExceeded" => (Retry, RateLimited),
        "ServiceUnavailable" | "ResourceUnavailable" | "ResourceInUse" => (Retry, Unavailable),
        "InternalError" | "InternalError.DescribeInstanceStatus" => (RetryOnce, Internal),
        "AuthFailure.TokenFailure" | "AuthFailure.SecretIdNotFound" => {
            (refresh_or_fail, CredentialsRejected)
        }
        "AuthFailure.SignatureFailure" => (refresh_or_fail, SignatureRejected),
        "AuthFailure.SignatureExpire" => (Class::ClockSkew, Kind::ClockSkew),
        "AuthFailure.InvalidSecretId"
        | "AuthFailure.InvalidAuthorization"
        | "AuthFailure.MFAFailure"
        | "UnauthorizedOperation.MFAExpired"
        | "UnauthorizedOperation.MFANotFound" => (Permanent, CredentialsCannotCall),
        "AuthFailure.UnauthorizedOperation" | "UnauthorizedOperation" => (Permanent, AccessDenied),
        "InvalidInstanceId.Malformed" | "InvalidParameterValue.InstanceIdMalformed" => {
            (Permanent, MalformedInstanceId)
        }
        "InvalidInstanceId.NotFound"
        | "ResourceNotFound"
        | "ResourceNotFound.InstanceIdNotFound"
        | "ResourceNotFound.InstanceNotFound" => (Permanent, InstanceNotFound),
        "InvalidInstanceState"
        | "UnsupportedOperation.StoppedModeStopCharging"
        | "UnsupportedOperation.InvalidInstanceState" => (Permanent, InstanceState),
        c if c.starts_with("UnsupportedOperation.InstanceState") => (Permanent, InstanceState),
        "OperationDenied.InstanceOperationInProgress"
        | "OperationDenied.InstanceCreating"
        | "UnsupportedOperation.LatestOperationUnfinished" => (Permanent, OperationInProgress),
        "InvalidInstance.NotSupported"
        | "UnsupportedOperation.SpecialInstanceType"
        | "UnsupportedOperation" => (Permanent, NotSupported),
        "FailedOperation"
        | "FailedOperation.InstanceOperationFailed"
        | "LimitExceeded"
        | "ResourceInsufficient"
        | "IpInBlacklist"
        | "IpNotInWhitelist" => (Permanent, Refused),
        _ => (Permanent, RequestRejected),
    }
}

/// An error the API returned in `Response.Error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// `Response.Error.Code`.
    pub code: String,
    /// `Response.Error.Message`, cleaned of control characters and bounded.
    pub message: String,
    /// `Response.RequestId`.
    pub request_id: String,
    /// The action that failed.
    pub action: &'static str,
    /// The instance the call was about, when there was one.
    pub instance: Option<String>,
    /// The product region sent in `X-TC-Region`.
    pub region: String,
    /// Where the credentials came from, to name in the fix.
    pub credential_source: String,
    /// Whether the credentials were temporary.
    pub temporary: bool,
    /// Local clock offset in seconds (server − local), when the server said.
    pub clock_offset: Option<i64>,
}

impl ApiError {
    /// The retry class and user-facing kind.
    pub(crate) fn classify(&self) -> (Class, Kind) {
        classify(&self.code, self.temporary)
    }

    fn instance(&self) -> &str {
        self.instance.as_deref().unwrap_or("the instance")
    }

    /// The state the message names, lowercased (`stopped`), or `not running`.
    pub fn state(&self) -> String {
        if let Some(s) = self.code.strip_prefix("UnsupportedOperation.InstanceState") {
            return s.to_ascii_lowercase();
        }
        const STATES: &[&str] = &[
            "STOPPED",
            "STOPPING",
            "PENDING",
            "STARTING",
            "REBOOTING",
            "SHUTDOWN",
            "TERMINATING",
            "TERMINATED",
            "LAUNCH_FAILED",
        ];
        STATES
            .iter()
            .find(|s| self.message.contains(*s))
            .map_or_else(|| "not running".to_owned(), |s| s.to_ascii_lowercase())
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = &self.code;
        let id = self.instance();
        let src = &self.credential_source;
        match self.classify().1 {
            Kind::RateLimited => write!(
                f,
                "Tencent Cloud API rate limit hit ({code}): try again in a few seconds"
            ),
            Kind::Unavailable => write!(
                f,
                "Tencent Cloud temporarily unavailable ({code}): try again shortly"
            ),
            Kind::Internal => write!(
                f,
                "Tencent Cloud internal error ({code}): report it if it persists"
            ),
            Kind::CredentialsRejected => write!(
                f,
                "credentials rejected ({code}): token invalid or expired, or SecretId unknown or disabled; check the credentials from {src}"
            ),
            Kind::SignatureRejected => write!(
                f,
                "signature rejected ({code}): SecretKey does not match SecretId; check the key from {src}"
            ),
            Kind::ClockSkew => match self.clock_offset {
                Some(off) => write!(
                    f,
                    "local clock is off by {off} s ({code}, more than 5 min): fix NTP"
                ),
                None => write!(f, "local clock is off by more than 5 min ({code}): fix NTP"),
            },
            Kind::CredentialsCannotCall => write!(
                f,
                "credentials from {src} cannot call the API ({code}): {}",
                self.message
            ),
            Kind::AccessDenied => write!(
                f,
                "access denied ({code}): grant {} on {id} to this identity",
                self.action
            ),
            Kind::MalformedInstanceId => write!(
                f,
                "'{id}' is not a valid instance ID ({code}): use ins-xxxxxxxx or lhins-xxxxxxxx"
            ),
            Kind::InstanceNotFound => write!(
                f,
                "instance {id} not found in {} for this account ({code}): check the instance ID and region",
                self.region
            ),
            Kind::InstanceState => write!(
                f,
                "instance {id} is {} ({code}): {}",
                self.state(),
                super::states::what_to_do(&self.state())
            ),
            Kind::OperationInProgress => write!(
                f,
                "an operation on {id} is in progress ({code}): retry when it ends"
            ),
            Kind::NotSupported => write!(f, "VNC is not supported for {id} ({code})"),
            Kind::Refused => write!(f, "Tencent Cloud refused ({code}): {}", self.message),
            Kind::RequestRejected => write!(
                f,
                "request rejected ({code}): check region, endpoint and product, else report a tcvnc bug"
            ),
        }
    }
}

/// Any failure of a cloud API call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// DNS, TCP or TLS failed before the request was written: nothing reached the cloud.
    #[error("cannot reach Tencent Cloud API at {host}: {cause}")]
    Connect {
        /// The API host.
        host: String,
        /// What went wrong, secret-free.
        cause: String,
    },
    /// The API rate limit could not admit the request in time (nothing was sent).
    #[error("Tencent Cloud API rate limit at {host}: try again in {} s", retry_after.as_millis().div_ceil(1000).max(1))]
    ApiBusy {
        /// The API host.
        host: String,
        /// How long the limit needs.
        retry_after: std::time::Duration,
    },
    /// The request was sent but no answer came back (timeout, reset, lost body): the
    /// cloud may have acted on it.
    #[error("no answer from Tencent Cloud API at {host} (a URL may have been spent): {cause}")]
    Transport {
        /// The API host.
        host: String,
        /// What went wrong, secret-free.
        cause: String,
    },
    /// An HTTP status other than 200.
    #[error("no usable answer from Tencent Cloud API at {host} (a URL may have been spent): HTTP status {status}")]
    Status {
        /// The API host.
        host: String,
        /// The status code.
        status: u16,
    },
    /// The body was not the `{"Response": …}` envelope.
    #[error("no usable answer from Tencent Cloud API at {host} (a URL may have been spent): unparsable response ({cause})")]
    Parse {
        /// The API host.
        host: String,
        /// What was wrong with it.
        cause: String,
    },
    /// The API answered with `Response.Error`.
    #[error("{0}")]
    Api(Box<ApiError>),
    /// No credentials could be loaded.
    #[error(transparent)]
    Credentials(#[from] super::credentials::Error),
    /// The answer lacked `InstanceVncUrl` or held an unusable one.
    #[error("Tencent Cloud returned an unusable InstanceVncUrl: {0}")]
    BadUrl(#[from] super::vnc_url::Error),
}

impl Error {
    /// The retry class: transport failures retry; API errors by code.
    pub fn class(&self) -> Class {
        match self {
            Error::Connect { .. }
            | Error::Transport { .. }
            | Error::Status { .. }
            | Error::Parse { .. } => Class::Retry,
            Error::Api(e) => e.classify().0,
            Error::Credentials(_) | Error::BadUrl(_) | Error::ApiBusy { .. } => Class::Permanent,
        }
    }

    /// A short fixed label of the kind of failure: the API's code, else the transport
    /// stage (logs, summaries, metrics).
    pub fn label(&self) -> &str {
        match self {
            Error::Api(e) => &e.code,
            Error::Connect { .. } => "connect",
            Error::ApiBusy { .. } => "api_busy",
            Error::Transport { .. } => "no_answer",
            Error::Status { .. } => "http_status",
            Error::Parse { .. } => "unparsable",
            Error::Credentials(_) => "credentials",
            Error::BadUrl(_) => "bad_url",
        }
    }

    /// The API error code, when the API answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api(e) => Some(&e.code),
            _ => None,
        }
    }

    /// True when the cloud refused us (credentials, instance, request): exit code 69.
    pub fn is_cloud_refusal(&self) -> bool {
        matches!(self, Error::Api(_) | Error::Credentials(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: &str, message: &str) -> ApiError {
        ApiError {
            code: code.into(),
            message: message.into(),
            request_id: "req-1".into(),
            action: "DescribeInstanceVncUrl",
            instance: Some("ins-r9hr2upy".into()),
            region: "ap-beijing".into(),
            credential_source: "environment (TENCENTCLOUD_SECRET_ID)".into(),
            temporary: false,
            clock_offset: None,
        }
    }

    #[test]
    fn unknown_codes_are_permanent() {
        assert_eq!(
            classify("Something.New", false),
            (Class::Permanent, Kind::RequestRejected)
        );
    }

    #[test]
    fn credential_codes_refresh_only_temporary() {
        assert_eq!(
            classify("AuthFailure.TokenFailure", true).0,
            Class::RefreshCredentials
        );
        assert_eq!(
            classify("AuthFailure.TokenFailure", false).0,
            Class::Permanent
        );
        assert_eq!(
            classify("AuthFailure.SignatureFailure", true).0,
            Class::RefreshCredentials
        );
        assert_eq!(
            classify("AuthFailure.SignatureFailure", false).0,
            Class::Permanent
        );
    }

    #[test]
    fn state_messages_name_state_and_fix() {
        let e = api(
            "InvalidInstanceState",
            "The instance `ins-r9hr2upy` is in state STOPPED.",
        );
        assert_eq!(
            e.to_string(),
            "instance ins-r9hr2upy is stopped (InvalidInstanceState): start it, then reconnect"
        );
        let e = api("UnsupportedOperation.InstanceStateRebooting", "");
        assert!(e.to_string().contains("is rebooting"));
        assert!(
            e.to_string()
                .ends_with("wait until it runs, then reconnect"),
            "{e}"
        );
        let e = api("UnsupportedOperation.InstanceStateStopping", "");
        assert!(
            e.to_string().contains("start it again once it stopped"),
            "{e}"
        );
    }

    #[test]
    fn every_kind_mentions_the_code() {
        for code in [
            "RequestLimitExceeded",
            "ServiceUnavailable",
            "InternalError",
            "AuthFailure.SecretIdNotFound",
            "AuthFailure.SignatureFailure",
            "AuthFailure.SignatureExpire",
            "AuthFailure.InvalidSecretId",
            "UnauthorizedOperation",
            "InvalidInstanceId.Malformed",
            "InvalidInstanceId.NotFound",
            "OperationDenied.InstanceCreating",
            "InvalidInstance.NotSupported",
            "LimitExceeded",
            "InvalidParameter",
        ] {
            assert!(api(code, "m").to_string().contains(code), "{code}");
        }
    }
}
