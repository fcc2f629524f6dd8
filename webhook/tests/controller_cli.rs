//! The controller's flags coexist with `serve`'s and parse as documented.

/// Named so that `cargo nextest run controller` selects these tests.
mod controller {
    use clap::{CommandFactory, Parser};
    use tls_steal_webhook::ServeArgs;
    use tls_steal_webhook::controller::{ControllerCommandArgs, ControllerSettings};

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[derive(Parser)]
    struct Alone {
        #[command(flatten)]
        args: ControllerCommandArgs,
    }

    #[test]
    fn serve_flags_do_not_collide() {
        Serve::command().debug_assert();
        Alone::command().debug_assert();
        let off = Serve::try_parse_from(["x"]).unwrap();
        assert!(!off.serve.controller.enabled);
        let on = Serve::try_parse_from([
            "x",
            "--controller",
            "--controller-debounce-ms=250",
            "--controller-namespace=apps",
        ])
        .unwrap();
        assert!(on.serve.controller.enabled);
        let settings = ControllerSettings::from(&on.serve.controller.args);
        assert_eq!(settings.debounce.as_millis(), 250);
        assert_eq!(settings.namespace.as_deref(), Some("apps"));
        assert_eq!(on.serve.controller.args.lease_name, "tls-steal-controller");
    }
}
