//! `update config ...`: read and change the one config file.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use frontend::config::{self, Config};
use frontend::keys;
use frontend::schedule::{self, Schedule};

const EXAMPLE: &str = "\
Examples:
  update config source https://updates.example.com/os#os/stable
  update config key add release /etc/update/release.pub
  update config schedule hourly 6
  update config show --json

The file is ROOT/etc/update/update.toml (ROOT is / on a device), rewritten atomically:
a crash leaves the old or the new file, never an empty one.";

/// The `--root` option of the front-end commands.
#[derive(clap::Args, Debug, Clone)]
pub struct RootArg {
    /// The system root: / on a device; the config is ROOT/etc/update/update.toml and the
    /// built-in backend's sysroot ROOT/sysroot.
    #[arg(long, env = "UPDATE_ROOT", value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

/// Read and change the settings.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLE)]
pub struct Args {
    /// The system root: / on a device; the config is ROOT/etc/update/update.toml.
    #[arg(
        long,
        env = "UPDATE_ROOT",
        value_name = "DIR",
        default_value = "/",
        global = true
    )]
    root: PathBuf,
    #[command(subcommand)]
    what: Setting,
}

/// One setting.
#[derive(clap::Subcommand, Debug)]
enum Setting {
    /// Where updates come from: an http://, https:// or file:// URL, optionally #REF.
    #[command(
        after_help = "Example:\n  update config source https://updates.example.com/os#os/stable"
    )]
    Source {
        /// The published repository.
        url: String,
    },
    /// Trusted signing keys: add, delete or update one.
    #[command(
        after_help = "Examples:\n  update config key add release /etc/update/release.pub\n  update config key update release NEW-BASE64-KEY\n  update config key delete old\n\nA key is the base64 text of an ed25519 public key from `update key generate`, or\nthe path of its .pub file. After `delete`, commits signed only by that key are refused."
    )]
    Key {
        /// add, delete or update.
        #[arg(value_parser = ["add", "delete", "update"])]
        action: String,
        /// The key's name.
        name: String,
        /// The public key (add and update).
        key: Option<String>,
    },
    /// When automatic updates run: every N months, hours or minutes.
    #[command(
        after_help = "Examples:\n  update config schedule hourly 6     (00:00, 06:00, 12:00, 18:00 UTC, plus a random delay)\n  update config schedule monthly 1\n\nWrites ROOT/etc/systemd/system/update.timer, update.service and update-mark-good.service,\nand enables the timer."
    )]
    Schedule {
        /// monthly, hourly or minute.
        #[arg(value_parser = ["monthly", "hourly", "minute"])]
        every: String,
        /// How many of them between runs.
        n: String,
    },
    /// Where the audit log goes: syslog (the default) or a file path.
    #[command(
        after_help = "Examples:\n  update config log /var/log/update.jsonl\n  update config log syslog"
    )]
    Log {
        /// syslog, or an absolute path.
        target: String,
    },
    /// Require signatures by a trusted key (true) or not (false: dangerous).
    #[command(after_help = "Example:\n  update config verify true")]
    Verify {
        /// true or false.
        value: String,
    },
    /// Boot tries a new deployment gets before the firmware falls back (1 to 9).
    #[command(
        name = "boot-retry-limit",
        after_help = "Example:\n  update config boot-retry-limit 3"
    )]
    BootRetryLimit {
        /// The number of tries.
        // A negative number is a value (refused by the front end with the accepted range),
        // not an unknown option.
        #[arg(allow_negative_numbers = true)]
        n: String,
    },
    /// Use mutual TLS with the source (needs tls-client-cert and tls-client-key).
    #[command(
        after_help = "Example:\n  update config tls-client-cert /etc/update/device.crt\n  update config tls-client-key /etc/update/device.key\n  update config secure true"
    )]
    Secure {
        /// true or false.
        value: String,
    },
    /// The client certificate (PEM) for mutual TLS.
    #[command(
        name = "tls-client-cert",
        after_help = "Example:\n  update config tls-client-cert /etc/update/device.crt"
    )]
    TlsClientCert {
        /// Its path.
        path: PathBuf,
    },
    /// The client certificate's private key (PEM).
    #[command(
        name = "tls-client-key",
        after_help = "Example:\n  update config tls-client-key /etc/update/device.key"
    )]
    TlsClientKey {
        /// Its path.
        path: PathBuf,
    },
    /// CA certificates (PEM) to trust for the source instead of the public roots.
    #[command(
        name = "tls-ca",
        after_help = "Example:\n  update config tls-ca /etc/update/fleet-ca.pem"
    )]
    TlsCa {
        /// Its path.
        path: PathBuf,
    },
    /// The command that reboots into a new deployment (default: systemctl reboot).
    #[command(
        name = "reboot-command",
        after_help = "Example:\n  update config reboot-command 'systemctl reboot'"
    )]
    RebootCommand {
        /// Run with /bin/sh -c.
        command: String,
    },
    /// Which backend does the work: builtin, NAME of an update-backend-NAME executable, or
    /// auto (the built-in one if set up, else the only one on PATH).
    #[command(
        after_help = "Examples:\n  update config backend ostree\n  update config backend auto"
    )]
    Backend {
        /// builtin, NAME or auto.
        name: String,
    },
    /// Print the settings.
    #[command(after_help = "Examples:\n  update config show\n  update config show --json")]
    Show {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Run `update config ...`.
pub fn run(a: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let root = &a.root;
    let mut c = Config::load(root)?;
    match a.what {
        Setting::Show { json } => {
            if json {
                let mut v = serde_json::to_value(&c)?;
                v["path"] = serde_json::json!(Config::path(root));
                super::print_json(out, &v)?;
            } else {
                writeln!(out, "# {}", Config::path(root).display())?;
                write!(out, "{}", toml::to_string(&c)?)?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        Setting::Source { url } => {
            config::validate_source(&url)?;
            c.source = Some(url);
        }
        Setting::Key { action, name, key } => {
            keys::change(&mut c.keys, action.parse()?, &name, key.as_deref())?
        }
        Setting::Schedule { every, n } => {
            let s = Schedule::parse(&every, &n)?;
            c.schedule = Some(s);
            c.save(root)?;
            let bin = std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "/usr/bin/update".into());
            for p in schedule::write_units(root, &s, &bin)? {
                writeln!(out, "wrote {}", p.display())?;
            }
            writeln!(
                out,
                "schedule {s}: OnCalendar={} with up to {} s of random delay",
                s.on_calendar(),
                s.max_delay_secs()
            )?;
            return Ok(ExitCode::SUCCESS);
        }
        Setting::Log { target } => {
            config::validate_log(&target)?;
            c.log = target;
        }
        Setting::Verify { value } => {
            c.verify = config::parse_bool("verify", &value)?;
            if !c.verify {
                eprintln!("WARNING: signature verification is now OFF: this system will install updates no trusted key vouches for. Every run logs it.");
            }
        }
        Setting::BootRetryLimit { n } => c.boot_retry_limit = config::validate_retries(&n)?,
        Setting::Secure { value } => {
            c.secure = config::parse_bool("secure", &value)?;
            c.check_secure()?;
        }
        Setting::TlsClientCert { path } => {
            c.tls_client_cert = Some(config::tls_file("tls-client-cert", &path)?)
        }
        Setting::TlsClientKey { path } => {
            c.tls_client_key = Some(config::tls_file("tls-client-key", &path)?)
        }
        Setting::TlsCa { path } => c.tls_ca = Some(config::tls_file("tls-ca", &path)?),
        Setting::RebootCommand { command } => {
            config::validate_reboot_command(&command)?;
            c.reboot_command = command;
        }
        Setting::Backend { name } => c.backend = frontend::backend::setting(&name)?,
    }
    c.save(root)?;
    writeln!(out, "saved {}", Config::path(root).display())?;
    Ok(ExitCode::SUCCESS)
}
