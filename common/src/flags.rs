//! Go-style command lines on top of clap, plus TOML `--config` files keyed like NSQ's.
//!
//! Go's `flag` package accepts `-name value`, `--name value`, `-name=value`,
//! `--name=value`; a boolean flag is set bare (`--snappy`) or with `=`
//! (`--snappy=false`) and never takes the next argument. The first non-flag
//! argument (or `--`) ends parsing and the rest is ignored; a repeated flag keeps
//! its last value unless it is a list.
//!
//! Low-level pieces: [`normalize_args`] rewrites argv so clap can parse it; the
//! value parsers [`parse_duration`], [`parse_bool`], [`parse_int`]; the argument
//! builders [`go_bool_arg`], [`go_value_arg`], [`go_list_arg`], [`go_command`].
//!
//! [`FlagSet`] ties them together the way NSQ apps resolve options: command line
//! flag, else the config file value (key = flag name with `-` → `_` unless renamed
//! with [`FlagSet::cfg`]), else the default. Config values are coerced like
//! `mreiferson/go-options` does: integers given for durations are milliseconds, a
//! string given for a list is split on commas.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::builder::ValueRange;
use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

/// Largest duration Go can hold (`time.Duration` is signed 64-bit nanoseconds).
const MAX_DURATION_NANOS: u128 = i64::MAX as u128;

/// Parses a Go duration: `300ms`, `1.5h`, `2h45m`, `250us`/`250µs`, `0`.
/// Negative durations are refused because `std::time::Duration` cannot hold them.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("invalid duration \"{s}\"");
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(err());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.bytes().take_while(u8::is_ascii_digit).count();
                a.split_at(n)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(err());
        }
        let unit_len = after
            .char_indices()
            .find(|&(_, c)| c == '.' || c.is_ascii_digit())
            .map_or(after.len(), |(i, _)| i);
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("invalid duration \"{s}\": missing unit")),
            _ => return Err(format!("invalid duration \"{s}\": unknown unit \"{unit}\"")),
        };
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| err())?
        };
        total = whole
            .checked_mul(unit_nanos)
            .and_then(|v| v.checked_add(total))
            .ok_or_else(err)?;
        if !frac_part.is_empty() {
            // Go also goes through float64 for the fractional part.
            let digits = &frac_part[..frac_part.len().min(18)];
            let frac: f64 = format!("0.{digits}").parse().map_err(|_| err())?;
            total += (frac * unit_nanos as f64) as u128;
        }
        if total > MAX_DURATION_NANOS {
            return Err(err());
        }
        rest = after;
    }
    if negative && total > 0 {
        return Err(format!(
            "invalid duration \"{s}\": negative durations are not allowed"
        ));
    }
    Ok(Duration::from_nanos(total as u64))
}

/// Formats a duration like Go's `Duration.String()`: `1m0s`, `1.5s`, `100ms`, `0s`.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    fn with_frac(whole: u128, frac: u128, frac_digits: usize, unit: &str) -> String {
        let mut s = whole.to_string();
        if frac > 0 {
            let f = format!("{frac:0frac_digits$}");
            s.push('.');
            s.push_str(f.trim_end_matches('0'));
        }
        s.push_str(unit);
        s
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return with_frac(nanos / 1_000, nanos % 1_000, 3, "\u{b5}s");
    }
    if nanos < 1_000_000_000 {
        return with_frac(nanos / 1_000_000, nanos % 1_000_000, 6, "ms");
    }
    let secs = nanos / 1_000_000_000;
    let sub = nanos % 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&with_frac(s, sub, 9, "s"));
    out
}

/// Parses a boolean exactly as Go's `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("invalid boolean value \"{s}\"")),
    }
}

/// Parses an integer as Go's int flags do (`strconv.ParseInt(s, 0, 64)`): decimal,
/// `0x` hex, `0o`/leading-`0` octal, `0b` binary, `_` between digits.
pub fn parse_int(s: &str) -> Result<i64, String> {
    let err = || format!("invalid integer value \"{s}\"");
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d, true)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d, true)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d, true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..], true)
    } else {
        (10, lower.as_str(), false)
    };
    if digits.contains('_') {
        // Underscores must sit between digits (a base prefix counts as a digit).
        let ok = !digits.ends_with('_')
            && !digits.contains("__")
            && (prefixed || !digits.starts_with('_'));
        if !ok {
            return Err(err());
        }
    }
    let clean: String = digits.chars().filter(|&c| c != '_').collect();
    if clean.is_empty() {
        return Err(err());
    }
    let magnitude = u64::from_str_radix(&clean, radix).map_err(|_| err())?;
    if neg {
        if magnitude > i64::MAX as u64 + 1 {
            return Err(err());
        }
        Ok((magnitude as i64).wrapping_neg())
    } else {
        i64::try_from(magnitude).map_err(|_| err())
    }
}

/// A Go boolean flag: `--name`, `--name=false`; never consumes the next argument.
pub fn go_bool_arg(name: &'static str) -> Arg {
    Arg::new(name)
        .long(name)
        .num_args(0..=1)
        .require_equals(true)
        .default_missing_value("true")
        .value_parser(parse_bool)
        .value_name("bool")
        .action(ArgAction::Set)
}

/// A Go flag that takes a value (`--name value` or `--name=value`); set a value parser on it.
pub fn go_value_arg(name: &'static str) -> Arg {
    Arg::new(name)
        .long(name)
        .num_args(1)
        .allow_hyphen_values(true)
        .action(ArgAction::Set)
}

/// A repeatable Go flag collecting every occurrence (`--name a --name b`).
pub fn go_list_arg(name: &'static str) -> Arg {
    go_value_arg(name).action(ArgAction::Append)
}

/// A clap command behaving like a Go `FlagSet`: `-h`, `-help`, `--help` print usage,
/// repeated flags keep the last value, no clap-generated `--version`.
pub fn go_command(name: &'static str) -> Command {
    Command::new(name)
        .disable_help_flag(true)
        .disable_version_flag(true)
        .args_override_self(true)
        .arg(
            Arg::new("help")
                .long("help")
                .alias("h")
                .help("Print this usage")
                .action(ArgAction::Help),
        )
}

#[derive(Clone, Copy)]
enum Shape {
    NoValue,
    OptionalValue,
    Value,
}

fn shape_of(cmd: &Command, name: &str) -> Option<Shape> {
    let arg = cmd.get_arguments().find(|a| {
        a.get_long() == Some(name)
            || a.get_all_aliases()
                .is_some_and(|aliases| aliases.contains(&name))
    })?;
    if !arg.get_action().takes_values() {
        return Some(Shape::NoValue);
    }
    let min = arg.get_num_args().map_or(1, |r: ValueRange| r.min_values());
    Some(if min == 0 {
        Shape::OptionalValue
    } else {
        Shape::Value
    })
}

/// Rewrites Go-style arguments (without the program name) into `--name[=value]` form
/// that clap parses: single-dash long flags get a second dash, a value-taking flag is
/// joined with its value (so values may start with `-`), and everything from the
/// first non-flag argument or `--` on is dropped, as Go's `flag` ignores it.
/// Unknown flags are passed through for clap to reject.
pub fn normalize_args<I, T>(cmd: &Command, args: I) -> Vec<String>
where
    I: IntoIterator<Item = T>,
    T: Into<String>,
{
    let mut out = Vec::new();
    let mut it = args.into_iter().map(Into::into);
    while let Some(tok) = it.next() {
        if tok == "--" || tok == "-" || !tok.starts_with('-') {
            break;
        }
        let body = tok
            .strip_prefix("--")
            .unwrap_or_else(|| &tok[1..])
            .to_string();
        if body.starts_with('-') || body.starts_with('=') {
            // Go calls this bad flag syntax; clap reports it as unexpected.
            out.push(tok);
            continue;
        }
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (body.clone(), None),
        };
        match (shape_of(cmd, &name), value) {
            (Some(Shape::Value), None) => match it.next() {
                Some(v) => out.push(format!("--{name}={v}")),
                None => out.push(format!("--{name}")),
            },
            (_, Some(v)) => out.push(format!("--{name}={v}")),
            (_, None) => out.push(format!("--{name}")),
        }
    }
    out
}

/// How a config file value is coerced for a flag (go-options' rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    Bool,
    Int,
    Float,
    Str,
    Duration,
    StrList,
    FloatList,
}

/// A flag that can also be set from the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagSpec {
    pub name: String,
    pub cfg_name: String,
    pub kind: FlagKind,
}

/// Loads an NSQ TOML config file into a table.
pub fn load_config(path: &Path) -> Result<toml::Table, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    parse_config(&text)
}

/// Parses NSQ TOML config text into a table.
pub fn parse_config(text: &str) -> Result<toml::Table, String> {
    toml::from_str::<toml::Table>(text).map_err(|e| e.to_string())
}

fn scalar_text(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Datetime(d) => Some(d.to_string()),
        _ => None,
    }
}

/// Turns one config value into `--name=value` arguments, coercing like go-options.
pub fn config_value_args(spec: &FlagSpec, v: &toml::Value) -> Result<Vec<String>, String> {
    let bad = || {
        format!(
            "config option {} has an invalid value {v} for --{}",
            spec.cfg_name, spec.name
        )
    };
    let one = |s: String| Ok(vec![format!("--{}={s}", spec.name)]);
    match (spec.kind, v) {
        (FlagKind::Bool, toml::Value::Boolean(b)) => one(b.to_string()),
        (FlagKind::Bool, toml::Value::String(s)) => one(s.clone()),
        // go-options maps an integer to `n == 0`; kept so config files mean the same.
        (FlagKind::Bool, toml::Value::Integer(i)) => one((*i == 0).to_string()),
        (FlagKind::Int, toml::Value::Integer(i)) => one(i.to_string()),
        (FlagKind::Int, toml::Value::String(s)) => one(s.clone()),
        (FlagKind::Float, toml::Value::Float(f)) => one(f.to_string()),
        (FlagKind::Float, toml::Value::Integer(i)) => one(i.to_string()),
        (FlagKind::Float, toml::Value::String(s)) => one(s.clone()),
        (FlagKind::Duration, toml::Value::String(s)) => one(s.clone()),
        // Integers are milliseconds, as go-options reads them.
        (FlagKind::Duration, toml::Value::Integer(ms)) if *ms >= 0 => one(format!("{ms}ms")),
        (FlagKind::Str, v) => scalar_text(v).map_or_else(|| Err(bad()), one),
        (FlagKind::StrList, toml::Value::String(s)) => Ok(s
            .split(',')
            .map(|p| format!("--{}={p}", spec.name))
            .collect()),
        (FlagKind::FloatList, toml::Value::String(s)) => Ok(s
            .split(',')
            .map(|p| format!("--{}={}", spec.name, p.trim()))
            .collect()),
        (FlagKind::StrList, toml::Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                toml::Value::String(s) => Ok(format!("--{}={s}", spec.name)),
                _ => Err(bad()),
            })
            .collect(),
        (FlagKind::FloatList, toml::Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                toml::Value::Float(_) | toml::Value::Integer(_) | toml::Value::String(_) => Ok(
                    format!("--{}={}", spec.name, scalar_text(i).unwrap_or_default()),
                ),
                _ => Err(bad()),
            })
            .collect(),
        _ => Err(bad()),
    }
}

/// A Go-like flag set: clap command plus which flags the config file may set.
#[derive(Debug, Clone)]
pub struct FlagSet {
    cmd: Command,
    specs: Vec<FlagSpec>,
}

impl FlagSet {
    /// An empty set with `-h/-help/--help`.
    pub fn new(app: &'static str) -> Self {
        FlagSet {
            cmd: go_command(app),
            specs: Vec::new(),
        }
    }

    /// Sets the text shown above the usage.
    pub fn about(mut self, text: &'static str) -> Self {
        self.cmd = self.cmd.about(text);
        self
    }

    /// Adds any argument; it is config-settable with `kind` coercion.
    pub fn arg(mut self, arg: Arg, kind: FlagKind) -> Self {
        let name = arg.get_id().as_str().to_string();
        self.cmd = self.cmd.arg(arg);
        self.specs.push(FlagSpec {
            cfg_name: name.replace('-', "_"),
            name,
            kind,
        });
        self
    }

    /// Adds an argument that only the command line can set (`--version`, `--config`).
    pub fn cli_arg(mut self, arg: Arg) -> Self {
        self.cmd = self.cmd.arg(arg);
        self
    }

    pub fn bool(self, name: &'static str, default: bool, help: &'static str) -> Self {
        let arg = go_bool_arg(name)
            .default_value(if default { "true" } else { "false" })
            .help(help);
        self.arg(arg, FlagKind::Bool)
    }

    pub fn string(
        self,
        name: &'static str,
        default: impl Into<String>,
        help: &'static str,
    ) -> Self {
        let arg = go_value_arg(name)
            .value_name("string")
            .default_value(default.into())
            .help(help);
        self.arg(arg, FlagKind::Str)
    }

    pub fn int(self, name: &'static str, default: i64, help: &'static str) -> Self {
        let arg = go_value_arg(name)
            .value_name("int")
            .value_parser(parse_int)
            .default_value(default.to_string())
            .help(help);
        self.arg(arg, FlagKind::Int)
    }

    pub fn duration(self, name: &'static str, default: Duration, help: &'static str) -> Self {
        let arg = go_value_arg(name)
            .value_name("duration")
            .value_parser(parse_duration)
            .default_value(format_duration(default))
            .help(help);
        self.arg(arg, FlagKind::Duration)
    }

    /// A repeatable string flag (no comma splitting on the command line, as in NSQ).
    pub fn string_list(self, name: &'static str, help: &'static str) -> Self {
        let arg = go_list_arg(name).value_name("string").help(help);
        self.arg(arg, FlagKind::StrList)
    }

    /// A repeatable float flag; each occurrence may also be comma separated.
    pub fn float_list(self, name: &'static str, help: &'static str) -> Self {
        let arg = go_list_arg(name)
            .value_name("float")
            .value_delimiter(',')
            .value_parser(|s: &str| {
                s.trim()
                    .parse::<f64>()
                    .map_err(|_| format!("invalid float value \"{s}\""))
            })
            .help(help);
        self.arg(arg, FlagKind::FloatList)
    }

    /// Adds the usual `--version` boolean (command line only).
    pub fn with_version(self) -> Self {
        self.cli_arg(
            go_bool_arg("version")
                .default_value("false")
                .help("Print version string"),
        )
    }

    /// Adds `--config <file>` (command line only); [`FlagSet::parse`] then reads that TOML file.
    pub fn with_config(self) -> Self {
        self.cli_arg(
            go_value_arg("config")
                .value_name("string")
                .default_value("")
                .help("Path to config file"),
        )
    }

    /// Renames a flag's config key (go-options' `cfg` tag), e.g. `lookupd-tcp-address`
    /// → `nsqlookupd_tcp_addresses`.
    pub fn cfg(mut self, name: &str, cfg_name: &str) -> Self {
        if let Some(spec) = self.specs.iter_mut().find(|s| s.name == name) {
            spec.cfg_name = cfg_name.to_string();
        }
        self
    }

    /// Makes a flag command-line only.
    pub fn no_cfg(mut self, name: &str) -> Self {
        self.specs.retain(|s| s.name != name);
        self
    }

    pub fn specs(&self) -> &[FlagSpec] {
        &self.specs
    }

    pub fn command(&self) -> &Command {
        &self.cmd
    }

    /// Parses `args` as from `std::env::args()` (program name first; a leading
    /// `-`-argument is taken as a flag, not the program name), then, unless
    /// `--version` is set, fills flags absent from the command line from the
    /// `--config` file. Errors exit with status 2 (0 for `--help`) via `err.exit()`.
    pub fn parse<I, T>(&self, args: I) -> Result<ParsedFlags, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let mut it = args.into_iter().map(Into::into).peekable();
        let bin = match it.peek() {
            Some(first) if !first.starts_with('-') => it.next().unwrap_or_default(),
            _ => self.cmd.get_name().to_string(),
        };
        let argv = normalize_args(&self.cmd, it);
        let with_bin = |extra: &[String]| {
            std::iter::once(bin.clone())
                .chain(argv.iter().cloned())
                .chain(extra.iter().cloned())
                .collect::<Vec<_>>()
        };
        let matches = self.cmd.clone().try_get_matches_from(with_bin(&[]))?;
        let on_cli: HashSet<String> = self
            .cmd
            .get_arguments()
            .map(|a| a.get_id().as_str())
            .filter(|id| matches.value_source(id) == Some(ValueSource::CommandLine))
            .map(str::to_string)
            .collect();

        let wants_version =
            self.has_arg("version") && matches.get_one::<bool>("version").copied() == Some(true);
        let config_path = if self.has_arg("config") {
            matches
                .get_one::<String>("config")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        } else {
            None
        };
        let Some(path) = config_path.filter(|_| !wants_version) else {
            return Ok(ParsedFlags {
                matches,
                on_cli,
                from_config: HashSet::new(),
                config_path: None,
            });
        };

        let fail = |msg: String| {
            self.cmd.clone().error(
                ErrorKind::Io,
                format!("failed to load config file {} - {msg}", path.display()),
            )
        };
        let table = load_config(&path).map_err(fail)?;
        let mut extra = Vec::new();
        let mut from_config = HashSet::new();
        for spec in &self.specs {
            if on_cli.contains(&spec.name) {
                continue;
            }
            if let Some(v) = table.get(&spec.cfg_name) {
                extra.extend(config_value_args(spec, v).map_err(fail)?);
                from_config.insert(spec.name.clone());
            }
        }
        let matches = self.cmd.clone().try_get_matches_from(with_bin(&extra))?;
        Ok(ParsedFlags {
            matches,
            on_cli,
            from_config,
            config_path: Some(path),
        })
    }

    fn has_arg(&self, id: &str) -> bool {
        self.cmd.get_arguments().any(|a| a.get_id() == id)
    }
}

/// The outcome of [`FlagSet::parse`]: values with defaults and config applied.
#[derive(Debug, Clone)]
pub struct ParsedFlags {
    matches: ArgMatches,
    on_cli: HashSet<String>,
    from_config: HashSet<String>,
    config_path: Option<PathBuf>,
}

impl ParsedFlags {
    pub fn matches(&self) -> &ArgMatches {
        &self.matches
    }

    /// The config file that was read, if any.
    pub fn config_path(&self) -> Option<&Path> {
        self.config_path.as_deref()
    }

    /// Whether the flag was given on the command line.
    pub fn on_command_line(&self, name: &str) -> bool {
        self.on_cli.contains(name)
    }

    /// Whether the flag's value came from the config file.
    pub fn from_config(&self, name: &str) -> bool {
        self.from_config.contains(name)
    }

    /// The typed value of a single-valued flag; panics on a type mismatch (a programming error).
    pub fn get<T: Clone + Send + Sync + 'static>(&self, name: &str) -> Option<T> {
        self.matches.get_one::<T>(name).cloned()
    }

    pub fn get_bool(&self, name: &str) -> bool {
        self.get::<bool>(name).unwrap_or(false)
    }

    pub fn get_i64(&self, name: &str) -> i64 {
        self.get::<i64>(name).unwrap_or(0)
    }

    pub fn get_string(&self, name: &str) -> String {
        self.get::<String>(name).unwrap_or_default()
    }

    pub fn get_duration(&self, name: &str) -> Duration {
        self.get::<Duration>(name).unwrap_or_default()
    }

    /// Every value of a list flag, in order.
    pub fn get_list<T: Clone + Send + Sync + 'static>(&self, name: &str) -> Vec<T> {
        self.matches
            .get_many::<T>(name)
            .map(|v| v.cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_duration("60s"), Ok(d(60_000)));
        assert_eq!(parse_duration("1m30s"), Ok(d(90_000)));
        assert_eq!(parse_duration("100ms"), Ok(d(100)));
        assert_eq!(parse_duration("1h"), Ok(d(3_600_000)));
        assert_eq!(parse_duration("1.5s"), Ok(d(1_500)));
        assert_eq!(parse_duration(".5s"), Ok(d(500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("250µs"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse_duration("2h45m0.5s"), Ok(d(9_900_500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("+1s"), Ok(d(1_000)));
        assert_eq!(parse_duration("-0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("-0s"), Ok(Duration::ZERO));
        for bad in [
            "",
            "60",
            "1x",
            "s",
            ".s",
            "1.5",
            "-1s",
            "1s2",
            "9999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_format_like_go() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(d(60_000)), "1m0s");
        assert_eq!(format_duration(d(3_600_000)), "1h0m0s");
        assert_eq!(format_duration(d(1_500)), "1.5s");
        assert_eq!(format_duration(d(250)), "250ms");
        assert_eq!(format_duration(d(25)), "25ms");
        assert_eq!(format_duration(Duration::from_micros(1_500)), "1.5ms");
        assert_eq!(format_duration(Duration::from_micros(250)), "250µs");
        assert_eq!(format_duration(Duration::from_nanos(5)), "5ns");
        assert_eq!(format_duration(d(600_000)), "10m0s");
        for s in ["1h2m3.25s", "90ms", "15m0s"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }

    #[test]
    fn go_booleans_and_ints_parse() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
        }
        for bad in ["", "yes", "tRuE", "2"] {
            assert!(parse_bool(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_int("42"), Ok(42));
        assert_eq!(parse_int("-42"), Ok(-42));
        assert_eq!(parse_int("0x10"), Ok(16));
        assert_eq!(parse_int("010"), Ok(8));
        assert_eq!(parse_int("0b101"), Ok(5));
        assert_eq!(parse_int("1_000"), Ok(1000));
        assert_eq!(parse_int("0"), Ok(0));
        assert_eq!(parse_int("-9223372036854775808"), Ok(i64::MIN));
        for bad in [
            "",
            "-",
            "1.5",
            "9223372036854775808",
            "08",
            "1__0",
            "_1",
            "abc",
        ] {
            assert!(parse_int(bad).is_err(), "{bad}");
        }
    }

    fn set() -> FlagSet {
        FlagSet::new("app")
            .with_version()
            .with_config()
            .bool("snappy", true, "")
            .bool("deflate", false, "")
            .string("tcp-address", "0.0.0.0:4150", "")
            .string("log-prefix", "[app] ", "")
            .int("mem-queue-size", 10000, "")
            .duration("msg-timeout", Duration::from_secs(60), "")
            .string_list("lookupd-tcp-address", "")
            .cfg("lookupd-tcp-address", "nsqlookupd_tcp_addresses")
            .float_list("e2e", "")
    }

    fn parse(args: &[&str]) -> Result<ParsedFlags, clap::Error> {
        set().parse(std::iter::once("app").chain(args.iter().copied()))
    }

    #[test]
    fn every_go_flag_spelling_is_accepted() {
        for args in [
            &["-tcp-address", "1.2.3.4:1"][..],
            &["--tcp-address", "1.2.3.4:1"],
            &["-tcp-address=1.2.3.4:1"],
            &["--tcp-address=1.2.3.4:1"],
        ] {
            let p = parse(args).unwrap();
            assert_eq!(p.get_string("tcp-address"), "1.2.3.4:1", "{args:?}");
        }
        let p = parse(&[]).unwrap();
        assert!(p.get_bool("snappy"));
        assert!(!p.get_bool("deflate"));
        assert_eq!(p.get_i64("mem-queue-size"), 10000);
        assert_eq!(p.get_duration("msg-timeout"), d(60_000));
        assert!(p.get_list::<String>("lookupd-tcp-address").is_empty());
        assert!(!p.get_bool("version"));
    }

    #[test]
    fn booleans_are_bare_or_take_equals_only() {
        assert!(parse(&["--deflate"]).unwrap().get_bool("deflate"));
        assert!(parse(&["-deflate"]).unwrap().get_bool("deflate"));
        assert!(!parse(&["--snappy=false"]).unwrap().get_bool("snappy"));
        assert!(!parse(&["-snappy=0"]).unwrap().get_bool("snappy"));
        // `false` is a positional argument: Go stops there and ignores the rest.
        let p = parse(&["--snappy", "false", "--deflate"]).unwrap();
        assert!(p.get_bool("snappy") && !p.get_bool("deflate"));
        assert!(parse(&["--snappy=maybe"]).is_err());
    }

    #[test]
    fn values_may_start_with_a_dash_and_be_empty() {
        let p = parse(&["--log-prefix", "-x- ", "--tcp-address="]).unwrap();
        assert_eq!(p.get_string("log-prefix"), "-x- ");
        assert_eq!(p.get_string("tcp-address"), "");
        let p = parse(&["-tcp-address", ""]).unwrap();
        assert_eq!(p.get_string("tcp-address"), "");
    }

    #[test]
    fn repeats_keep_the_last_value_and_lists_collect() {
        let p = parse(&[
            "--mem-queue-size=1",
            "-mem-queue-size",
            "2",
            "--lookupd-tcp-address",
            "a:4160",
            "-lookupd-tcp-address=b:4160",
            "--e2e=0.5,0.99",
            "--e2e",
            "1",
        ])
        .unwrap();
        assert_eq!(p.get_i64("mem-queue-size"), 2);
        assert_eq!(
            p.get_list::<String>("lookupd-tcp-address"),
            ["a:4160", "b:4160"]
        );
        assert_eq!(p.get_list::<f64>("e2e"), [0.5, 0.99, 1.0]);
    }

    #[test]
    fn bad_input_is_a_usage_error_with_status_2() {
        for args in [
            &["--nope"][..],
            &["-nope=1"],
            &["--mem-queue-size", "x"],
            &["--msg-timeout=60"],
            &["--tcp-address"],
            &["---tcp-address=x"],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
        for help in ["-h", "-help", "--help"] {
            let err = parse(&[help]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::DisplayHelp);
            assert_eq!(err.exit_code(), 0);
        }
    }

    #[test]
    fn arguments_after_the_first_positional_or_double_dash_are_ignored() {
        let p = parse(&["--deflate", "extra", "--nope"]).unwrap();
        assert!(p.get_bool("deflate"));
        let p = parse(&["--", "--nope"]).unwrap();
        assert!(!p.get_bool("deflate"));
        // No program name: a leading flag is still a flag.
        let p = set().parse(["--deflate"]).unwrap();
        assert!(p.get_bool("deflate"));
    }

    #[test]
    fn config_values_are_coerced_like_go_options() {
        let table = parse_config(
            r#"
            mem_queue_size = 100
            msg_timeout = 1500
            snappy = 1
            deflate = "true"
            nsqlookupd_tcp_addresses = "a:1,b:2"
            e2e = [1, 0.5]
            "#,
        )
        .unwrap();
        let specs = set().specs().to_vec();
        let args = |name: &str| {
            let spec = specs.iter().find(|s| s.name == name).unwrap();
            config_value_args(spec, &table[&spec.cfg_name]).unwrap()
        };
        assert_eq!(args("mem-queue-size"), ["--mem-queue-size=100"]);
        assert_eq!(args("msg-timeout"), ["--msg-timeout=1500ms"]);
        assert_eq!(args("snappy"), ["--snappy=false"]);
        assert_eq!(args("deflate"), ["--deflate=true"]);
        assert_eq!(
            args("lookupd-tcp-address"),
            ["--lookupd-tcp-address=a:1", "--lookupd-tcp-address=b:2"]
        );
        assert_eq!(args("e2e"), ["--e2e=1", "--e2e=0.5"]);
        let spec = &specs.iter().find(|s| s.name == "mem-queue-size").unwrap();
        assert!(config_value_args(spec, &toml::Value::Float(1.5)).is_err());
    }

    #[test]
    fn command_line_beats_config_file_beats_default() {
        let dir = std::env::temp_dir().join(format!("nsq-flags-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("app.cfg");
        std::fs::write(
            &path,
            "mem_queue_size = 5\nmsg_timeout = \"2s\"\ntcp_address = \"cfg:1\"\nunknown_key = 1\n",
        )
        .unwrap();
        let cfg = format!("--config={}", path.display());
        let p = parse(&[&cfg, "--tcp-address", "cli:1"]).unwrap();
        assert_eq!(p.get_string("tcp-address"), "cli:1");
        assert_eq!(p.get_i64("mem-queue-size"), 5);
        assert_eq!(p.get_duration("msg-timeout"), d(2_000));
        assert_eq!(p.get_string("log-prefix"), "[app] ");
        assert!(p.from_config("mem-queue-size") && !p.from_config("tcp-address"));
        assert!(p.on_command_line("tcp-address"));
        assert_eq!(p.config_path(), Some(path.as_path()));

        // --version skips the config file, so a broken one cannot block it.
        std::fs::write(&path, "this is = = not toml").unwrap();
        assert!(parse(&[&cfg, "--version"]).unwrap().get_bool("version"));
        let err = parse(&[&cfg]).unwrap_err();
        assert!(
            err.to_string().contains("failed to load config file"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
