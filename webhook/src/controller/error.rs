//! Why a reconciliation or a status update failed. One enum for the controller; its variant is
//! the `error` label of `tls_steal_controller_reconcile_errors_total`.

/// A failed reconciliation or status update.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed")]
    Kube(#[from] kube::Error),
    #[error("{workload}: the patch still conflicted after {attempts} attempts")]
    Conflict {
        workload: String,
        attempts: u32,
        #[source]
        last: kube::Error,
    },
    #[error("a {0} without a name or namespace")]
    InvalidObject(&'static str),
}

/// The metric label of an [`Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    Kube,
    Conflict,
    InvalidObject,
}

impl ErrorKind {
    /// In declaration order: `kind as usize` indexes it.
    pub const ALL: [ErrorKind; 3] = [
        ErrorKind::Kube,
        ErrorKind::Conflict,
        ErrorKind::InvalidObject,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Kube => "kube",
            ErrorKind::Conflict => "conflict",
            ErrorKind::InvalidObject => "invalid_object",
        }
    }
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Kube(_) => ErrorKind::Kube,
            Error::Conflict { .. } => ErrorKind::Conflict,
            Error::InvalidObject(_) => ErrorKind::InvalidObject,
        }
    }
}

/// A failed `test` op (422) or a resourceVersion precondition (409): someone changed the object.
pub(super) fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 || s.code == 422)
}

pub(super) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// `e` and its causes, `: `-separated (what logs and events show).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_are_metric_labels() {
        let e = Error::Conflict {
            workload: "a/Deployment/b".into(),
            attempts: 5,
            last: kube::Error::Api(Box::new(kube::core::Status::failure(
                "modified", "Conflict",
            ))),
        };
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert_eq!(e.kind().as_str(), "conflict");
        assert!(e.to_string().contains("a/Deployment/b"));
        assert!(chain(&e).ends_with("modified: Conflict"), "{}", chain(&e));
        assert_eq!(
            ErrorKind::ALL.map(ErrorKind::as_str),
            ["kube", "conflict", "invalid_object"]
        );
    }
}
