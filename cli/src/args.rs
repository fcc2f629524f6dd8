//! The command line of `kubectl steal`.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Steal (or mirror) filtered HTTPS requests of a workload to a process on this machine.
///
/// Requests that match the filter are taken out of the pod's traffic after the tls-steal sidecar
/// has decrypted them, and delivered to LOCAL_ADDR; everything else keeps reaching the real app.
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "kubectl-steal", bin_name = "kubectl steal", version)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    /// `status TARGET`: the sessions active on the target's pods.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Say why requests are (or are not) stolen instead of stealing: for each pod of TARGET the
    /// configs that matched or not, the plan's ports and their live state, the active sessions
    /// and, with `--header 'name: value'`, `--path`, `--method` (a sample request; `--port`
    /// limits the ports), where that request would go. Registers nothing.
    #[arg(long)]
    pub explain: bool,

    /// Output of `--explain`: `human` (default) or `json`.
    #[arg(short = 'o', long = "output", value_enum, requires = "explain")]
    pub output: Option<crate::inspect::Format>,

    /// The workload: `deploy/NAME`, `statefulset/NAME`, `rollout/NAME`, `pod/NAME` (also
    /// `daemonset/`, `rs/`, `job/`). Not needed with `--connect`.
    pub target: Option<String>,

    /// Port of the app whose requests to take (as the app serves it, e.g. 443). Repeatable.
    #[arg(short = 'p', long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,

    /// Take requests with a header line `name: value` matching REGEX (case-insensitive).
    #[arg(long = "header", value_name = "REGEX")]
    pub headers: Vec<String>,

    /// Take requests whose path (or path?query) matches REGEX.
    #[arg(long = "path", value_name = "REGEX")]
    pub paths: Vec<String>,

    /// Take requests with this method.
    #[arg(long = "method", value_name = "METHOD")]
    pub methods: Vec<String>,

    /// Several filters match when any of them does (default: all of them must).
    #[arg(long)]
    pub any: bool,

    /// Where the local app listens: `PORT`, `HOST:PORT` (default: 127.0.0.1 and the request's
    /// port).
    #[arg(long, value_name = "LOCAL_ADDR")]
    pub to: Option<String>,

    /// How to talk to the local app: `tls` (default) or `tcp` (plaintext).
    #[arg(long, value_enum, value_name = "PROTOCOL")]
    pub delivery: Option<DeliveryProtocol>,

    /// SNI sent to the local app (default: the SNI the original client sent).
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,

    /// PEM file or directory of roots the local app's certificate must chain to. Repeatable.
    /// Without this and `--server-cert` the local app's certificate is not verified.
    #[arg(long = "trust-root", value_name = "PEM")]
    pub trust_roots: Vec<PathBuf>,

    /// PEM file with the certificate the local app must present.
    #[arg(long, value_name = "PEM")]
    pub server_cert: Option<PathBuf>,

    /// `steal` (the local app answers) or `mirror` (the real app answers, you get a copy).
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,

    /// Namespace of the target (default: the kubeconfig context's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,

    /// Kubeconfig context to use.
    #[arg(long)]
    pub context: Option<String>,

    /// A mirrord config (JSON or YAML); its `feature.network.incoming` section is used. Flags
    /// override it.
    #[arg(short = 'f', long = "config-file", value_name = "FILE")]
    pub config_file: Option<PathBuf>,

    /// Talk to a sidecar's session API at HOST:PORT directly, without Kubernetes.
    #[arg(long, value_name = "HOST:PORT")]
    pub connect: Option<String>,

    /// With --connect: the session ticket to register with (a sidecar that requires
    /// authorization refuses a registration without one). In a cluster, kubectl-steal gets the
    /// ticket from the StealSession object it creates.
    #[arg(
        long,
        env = "TLS_STEAL_TICKET",
        hide_env_values = true,
        value_name = "TICKET"
    )]
    pub ticket: Option<String>,

    /// Who you are, shown in the sidecar's status (default: $USER@$HOSTNAME).
    #[arg(long, value_name = "TEXT")]
    pub client: Option<String>,
}

impl Args {
    /// Parses the process's arguments; see [`Args::parse_args`].
    pub fn from_env() -> Self {
        Self::parse_args(std::env::args_os())
    }

    /// Like `parse_from`, but `status` may follow the options it shares with the session
    /// (`-n NS`, `--namespace`, `--context`): people write `kubectl steal -n shop status
    /// deploy/web` as they write `kubectl -n shop get pods`, and clap only sees a subcommand in
    /// the first position.
    pub fn parse_args<I, T>(argv: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Self::parse_from(status_first(argv.into_iter().map(Into::into).collect()))
    }
}

/// `argv` with a `status` that follows only `-n`/`--namespace`/`--context` moved to the front.
fn status_first(mut argv: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut i = 1;
    while let Some(a) = argv.get(i).and_then(|a| a.to_str()) {
        match a {
            "-n" | "--namespace" | "--context" => i += 2,
            _ if a.starts_with("--namespace=")
                || a.starts_with("--context=")
                || (a.starts_with("-n") && !a.starts_with("--")) =>
            {
                i += 1
            }
            "status" => {
                let status = argv.remove(i);
                argv.insert(1, status);
                break;
            }
            _ => break,
        }
    }
    argv
}

/// Subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// The sessions active on the pods of TARGET: who, ports, filter, mode, since when,
    /// requests taken (read from each pod's sidecar).
    Status(crate::status::StatusArgs),
}

/// `--delivery`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum DeliveryProtocol {
    /// TLS to the local app.
    #[default]
    Tls,
    /// Plaintext (HTTP/1.1, or h2c with prior knowledge for HTTP/2 requests).
    Tcp,
}

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Steal,
    Mirror,
}

impl From<ModeArg> for tls_steal_crds::session::Mode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Steal => tls_steal_crds::session::Mode::Steal,
            ModeArg::Mirror => tls_steal_crds::session::Mode::Mirror,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn parses_the_documented_spelling() {
        let a = Args::try_parse_from([
            "kubectl-steal",
            "deploy/web",
            "--port",
            "443",
            "--header",
            "x-steal: yes",
            "--header",
            "x-b: 1",
            "--path",
            "^/api",
            "--any",
            "--to",
            "127.0.0.1:8443",
            "--delivery",
            "tcp",
            "--mode",
            "mirror",
            "-n",
            "shop",
        ])
        .unwrap();
        assert_eq!(a.target.as_deref(), Some("deploy/web"));
        assert_eq!(a.ports, [443]);
        assert_eq!(a.headers.len(), 2);
        assert!(a.any);
        assert_eq!(a.delivery, Some(DeliveryProtocol::Tcp));
        assert_eq!(a.mode, Some(ModeArg::Mirror));
        assert_eq!(a.namespace.as_deref(), Some("shop"));
    }

    #[test]
    fn parses_explain_and_status() {
        let a = Args::try_parse_from([
            "kubectl-steal",
            "--explain",
            "deploy/web",
            "--header",
            "x-steal: yes",
            "-o",
            "json",
        ])
        .unwrap();
        assert!(a.explain && a.command.is_none());
        assert_eq!(a.output, Some(crate::inspect::Format::Json));
        assert_eq!(a.target.as_deref(), Some("deploy/web"));
        let a =
            Args::try_parse_from(["kubectl-steal", "status", "deploy/web", "-n", "shop"]).unwrap();
        let Some(Command::Status(s)) = a.command else {
            panic!("not status: {a:?}")
        };
        assert_eq!(
            (s.target.as_str(), s.namespace.as_deref()),
            ("deploy/web", Some("shop"))
        );
        // Namespace and context before `status`, as with kubectl.
        for argv in [
            &["kubectl-steal", "-n", "shop", "status", "deploy/web"][..],
            &["kubectl-steal", "--namespace=shop", "status", "deploy/web"],
            &[
                "kubectl-steal",
                "-nshop",
                "--context",
                "c",
                "status",
                "deploy/web",
            ],
        ] {
            let a = Args::parse_args(argv);
            let Some(Command::Status(s)) = a.command else {
                panic!("{argv:?}: not status: {a:?}")
            };
            assert_eq!(
                (s.target.as_str(), s.namespace.as_deref()),
                ("deploy/web", Some("shop")),
                "{argv:?}"
            );
        }
        // Other options before it: not moved (a session's TARGET named `status` is refused
        // by clap as before).
        assert_eq!(
            status_first(["k", "--port", "443", "status"].map(Into::into).to_vec()),
            ["k", "--port", "443", "status"]
                .map(std::ffi::OsString::from)
                .to_vec()
        );
        // A workload is still a TARGET.
        let a = Args::try_parse_from(["kubectl-steal", "deploy/status", "--port", "443"]).unwrap();
        assert!(a.command.is_none());
        assert_eq!(a.target.as_deref(), Some("deploy/status"));
        assert!(Args::try_parse_from(["kubectl-steal", "deploy/web", "-o", "json"]).is_err());
    }
}
