//! A file of targets as a discovery source, for targets ECS does not know: whatever
//! tracks them (consul-template, a Kubernetes sidecar, a deploy script) writes the
//! file, and tether follows it.
//!
//! Two formats, chosen by the file's extension:
//! - `.json`: an array whose entries are `"IP:port"` strings or objects
//!   `{ "address": "IP:port", "draining": false }`, mixed as one likes. Templates and
//!   `jq` write it easily, an entry can say it drains, and `[]` says "no targets" in
//!   a way a half-written file cannot.
//! - any other extension: one `IP:port` a line, `#` to the end of a line a comment.
//!   What a shell script writes.
//!
//! The file is polled: a `stat` each interval, and a read only when its modification
//! time, size or inode changed, so both a tool that writes in place and one that
//! renames a new file over the old are seen, and an unchanged file costs a `stat`.
//!
//! A missing, unreadable or empty file, or one wrong at a line (a syntax error, a bad
//! address, an address listed twice), is an error, and the poll loop keeps the last
//! good targets: an empty file is what a tool that truncates and then writes leaves
//! for a moment, so only an explicit JSON `[]` empties a group.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::{Discovered, DiscoveryError, Source};

/// A targets file is polled every 5 s unless the config says otherwise: a `stat`
/// costs next to nothing.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// Where a group's targets come from in a file (validated config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDiscovery {
    /// A relative path in the config is taken from the config file's directory. The
    /// file need not exist at start (a tool may write it later).
    pub path: PathBuf,
    /// Default 5 s.
    pub interval: Duration,
}

/// How a targets file is written, by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.json` (in any case): an array of `"IP:port"` strings or
    /// `{ "address": "IP:port", "draining": false }` objects.
    Json,
    /// Any other extension, or none: one `IP:port` a line, `#` comments.
    Lines,
}

impl Format {
    /// The format of a file named `path`.
    pub fn of(path: &Path) -> Format {
        match path.extension() {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Lines,
        }
    }
}

/// Why a targets file gave no answer (the poll loop keeps the last good targets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("{}: cannot read: {message}", .path.display())]
    Read { path: PathBuf, message: String },
    /// Nothing but blanks (and comments): a file being written looks like this.
    #[error("{}: lists no targets; only a JSON `[]` removes every target", .path.display())]
    Empty { path: PathBuf },
    /// Line and column from 1 (for JSON, where the parser noticed: the end of the
    /// offending value).
    #[error("{}:{line}:{column}: {message}", .path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

// === Parsing ===

/// The targets `text` lists, sorted by address; `path` names the file in errors.
pub fn parse(text: &str, format: Format, path: &Path) -> Result<Vec<Discovered>, FileError> {
    // A byte order mark, as some Windows editors write.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let empty = || FileError::Empty {
        path: path.to_path_buf(),
    };
    if text.trim().is_empty() {
        return Err(empty());
    }
    let mut targets = match format {
        Format::Json => parse_json(text, path)?,
        Format::Lines => parse_lines(text, path)?,
    };
    // Comments alone are no more explicit than an empty file.
    if targets.is_empty() && format == Format::Lines {
        return Err(empty());
    }
    targets.sort_by_key(|t| t.addr);
    Ok(targets)
}

/// A target address, as in the config's `targets`: `IP:port`, port 1–65535.
fn parse_address(s: &str) -> Result<SocketAddr, String> {
    match s.parse::<SocketAddr>() {
        Ok(a) if a.port() != 0 => Ok(a),
        Ok(_) => Err(format!("invalid target \"{s}\": port must be 1-65535")),
        Err(_) => Err(format!(
            "invalid target \"{s}\": expected IP:port, like \"10.0.1.12:3000\" or \"[::1]:3000\""
        )),
    }
}

fn target(addr: SocketAddr, draining: bool) -> Discovered {
    Discovered {
        addr,
        task_arn: None,
        draining,
    }
}

fn parse_lines(text: &str, path: &Path) -> Result<Vec<Discovered>, FileError> {
    let mut first_at = std::collections::HashMap::new();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or_default();
        let token = content.trim();
        if token.is_empty() {
            continue;
        }
        let indent = content.len() - content.trim_start().len();
        let invalid = |message: String| FileError::Invalid {
            path: path.to_path_buf(),
            line: i + 1,
            column: content[..indent].chars().count() + 1,
            message,
        };
        if token.contains(char::is_whitespace) {
            return Err(invalid(format!(
                "\"{token}\": one IP:port a line (comments start with #)"
            )));
        }
        let addr = parse_address(token).map_err(invalid)?;
        if let Some(first) = first_at.insert(addr, i + 1) {
            return Err(invalid(format!(
                "target {addr} is listed twice (first at line {first})"
            )));
        }
        out.push(target(addr, false));
    }
    Ok(out)
}

fn parse_json(text: &str, path: &Path) -> Result<Vec<Discovered>, FileError> {
    serde_json::from_str::<TargetList>(text)
        .map(|list| list.0)
        .map_err(|e| {
            // serde_json's message ends with the position, which the error gives apart.
            let message = e.to_string();
            let position = format!(" at line {} column {}", e.line(), e.column());
            FileError::Invalid {
                path: path.to_path_buf(),
                line: e.line().max(1),
                column: e.column().max(1),
                message: message.strip_suffix(&position).unwrap_or(&message).into(),
            }
        })
}

/// A JSON targets file: an array of entries, each address once. Entries are checked
/// as they are read, so that serde_json places an error at the entry.
struct TargetList(Vec<Discovered>);

impl<'de> Deserialize<'de> for TargetList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TargetList, D::Error> {
        struct List;
        impl<'de> Visitor<'de> for List {
            type Value = TargetList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of targets, like [\"10.0.1.12:3000\"]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TargetList, A::Error> {
                let mut seen = HashSet::new();
                let mut out = Vec::new();
                while let Some(t) = seq.next_element_seed(Entry { seen: &mut seen })? {
                    out.push(t);
                }
                Ok(TargetList(out))
            }
        }
        d.deserialize_seq(List)
    }
}

/// One entry of the array: `"IP:port"` or `{ "address": "IP:port", "draining": false }`.
/// `seen` holds the addresses of the entries before it.
struct Entry<'a> {
    seen: &'a mut HashSet<SocketAddr>,
}

impl Entry<'_> {
    fn once<E: de::Error>(self, t: Discovered) -> Result<Discovered, E> {
        if !self.seen.insert(t.addr) {
            return Err(E::custom(format!("target {} is listed twice", t.addr)));
        }
        Ok(t)
    }
}

impl<'de> DeserializeSeed<'de> for Entry<'_> {
    type Value = Discovered;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Discovered, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Entry<'_> {
    type Value = Discovered;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a target: \"IP:port\" or { \"address\": \"IP:port\", \"draining\": false }")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Discovered, E> {
        let addr = parse_address(v).map_err(E::custom)?;
        self.once(target(addr, false))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Discovered, A::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Object {
            address: Address,
            #[serde(default)]
            draining: bool,
        }
        let o = Object::deserialize(de::value::MapAccessDeserializer::new(map))?;
        self.once(target(o.address.0, o.draining))
    }
}

/// An `"IP:port"` string, refused (with the parser's position) as soon as it is read.
struct Address(SocketAddr);

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Address, D::Error> {
        struct Str;
        impl Visitor<'_> for Str {
            type Value = Address;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an \"IP:port\" string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Address, E> {
                parse_address(v).map(Address).map_err(E::custom)
            }
        }
        d.deserialize_str(Str)
    }
}

// === The source ===

/// What `stat` says of a file's identity and version: when any of it changes, the
/// file is read again (the inode, for a file renamed over the old one with the same
/// size and modification time, as `rsync -t` and `cp -p` leave it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    device: u64,
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            device: meta.dev(),
            inode: meta.ino(),
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

/// The file side of one group.
pub struct FileSource {
    config: FileDiscovery,
    format: Format,
    /// The file as last read: its stamp then, and what it said.
    last: Option<(Stamp, Result<Vec<Discovered>, FileError>)>,
}

impl FileSource {
    /// Nothing is read until the first poll.
    pub fn new(config: FileDiscovery) -> FileSource {
        FileSource {
            format: Format::of(&config.path),
            config,
            last: None,
        }
    }

    /// One look at the file: a `stat`, and a read only if the stamp changed since the
    /// last read. The file system calls run off the runtime's threads (`tokio::fs`);
    /// `last` is set only once a read is whole, so a dropped look leaves no trace.
    async fn look(&mut self) -> Result<Vec<Discovered>, FileError> {
        let path = &self.config.path;
        let cannot_read = |e: std::io::Error| FileError::Read {
            path: path.clone(),
            message: e.to_string(),
        };
        let stamp = Stamp::of(&tokio::fs::metadata(path).await.map_err(cannot_read)?);
        if let Some((seen, answer)) = &self.last {
            if *seen == stamp {
                return answer.clone();
            }
        }
        // A change after the stat is seen by the next look (its stamp differs).
        let text = tokio::fs::read_to_string(path).await.map_err(cannot_read)?;
        let answer = parse(&text, self.format, path);
        self.last = Some((stamp, answer.clone()));
        answer
    }
}

#[async_trait]
impl Source for FileSource {
    async fn poll(&mut self) -> Result<Vec<Discovered>, DiscoveryError> {
        Ok(self.look().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Result<Vec<Discovered>, FileError> {
        parse(text, Format::Json, Path::new("targets.json"))
    }

    fn lines(text: &str) -> Result<Vec<Discovered>, FileError> {
        parse(text, Format::Lines, Path::new("targets.txt"))
    }

    /// The targets as `address` or `address (draining)`.
    fn summary(targets: &[Discovered]) -> Vec<String> {
        targets
            .iter()
            .map(|t| {
                let suffix = if t.draining { " (draining)" } else { "" };
                format!("{}{suffix}", t.addr)
            })
            .collect()
    }

    /// `line:column: message` of an invalid file.
    fn invalid_at(r: Result<Vec<Discovered>, FileError>) -> (usize, usize, String) {
        match r {
            Err(FileError::Invalid {
                line,
                column,
                message,
                ..
            }) => (line, column, message),
            other => panic!("not an Invalid error: {other:?}"),
        }
    }

    #[test]
    fn the_format_follows_the_extension() {
        for (path, format) in [
            ("targets.json", Format::Json),
            ("/etc/tether/TARGETS.JSON", Format::Json),
            ("targets.txt", Format::Lines),
            ("targets", Format::Lines),
            ("targets.json.tmp", Format::Lines),
        ] {
            assert_eq!(Format::of(Path::new(path)), format, "{path}");
        }
    }

    #[test]
    fn it_should_read_strings_and_objects_mixed_in_a_json_array_sorted_by_address() {
        let got = json(
            r#"[
  "10.0.0.7:3000",
  { "address": "10.0.0.5:3000", "draining": true },
  { "address": "[::1]:8080" },
  { "draining": false, "address": "10.0.0.6:3000" }
]"#,
        )
        .unwrap();
        assert_eq!(
            summary(&got),
            [
                "10.0.0.5:3000 (draining)",
                "10.0.0.6:3000",
                "10.0.0.7:3000",
                "[::1]:8080"
            ]
        );
        assert!(got.iter().all(|t| t.task_arn.is_none()));
        // As `jq -c` writes it, after a Windows editor's byte order mark.
        let compact = json("\u{feff}[\"10.0.0.2:80\",\"10.0.0.1:80\"]").unwrap();
        assert_eq!(summary(&compact), ["10.0.0.1:80", "10.0.0.2:80"]);
    }

    #[test]
    fn it_should_read_one_address_a_line_with_comments_and_blank_lines() {
        let got = lines(
            "# written by deploy.sh\n\n10.0.0.7:3000\n  10.0.0.5:3000   # the canary\r\n[::1]:8080\n\t\n",
        )
        .unwrap();
        assert_eq!(
            summary(&got),
            ["10.0.0.5:3000", "10.0.0.7:3000", "[::1]:8080"]
        );
    }

    #[test]
    fn an_empty_file_is_an_error_and_only_a_json_empty_array_means_no_targets() {
        for text in ["", " \n\t\n", "\u{feff}"] {
            assert!(
                matches!(json(text), Err(FileError::Empty { .. })),
                "{text:?}"
            );
            assert!(
                matches!(lines(text), Err(FileError::Empty { .. })),
                "{text:?}"
            );
        }
        // A text file of comments may be one whose addresses are not yet written.
        assert!(matches!(
            lines("# targets\n# none yet\n"),
            Err(FileError::Empty { .. })
        ));
        assert_eq!(json("[]\n").unwrap(), []);
        assert_eq!(
            json("").unwrap_err().to_string(),
            "targets.json: lists no targets; only a JSON `[]` removes every target"
        );
    }

    #[test]
    fn a_bad_json_entry_is_an_error_at_its_line() {
        let bad_address = "[\n  \"10.0.0.5:3000\",\n  \"10.0.0.6\"\n]";
        let (line, column, message) = invalid_at(json(bad_address));
        // The column of the closing quote: serde_json notices there.
        assert_eq!((line, column), (3, 12));
        assert!(
            message.starts_with("invalid target \"10.0.0.6\": expected IP:port"),
            "{message}"
        );
        assert_eq!(
            json(bad_address).unwrap_err().to_string(),
            format!("targets.json:3:12: {message}")
        );
        let bad_object_address =
            "[\n  {\n    \"address\": \"10.0.0.5:0\",\n    \"draining\": false\n  }\n]";
        let (line, _, message) = invalid_at(json(bad_object_address));
        assert_eq!(line, 3);
        assert!(message.contains("port must be 1-65535"), "{message}");
        // Syntax, a misspelt key, a wrong type, a missing address, a duplicate.
        let cases = [
            (
                "[\n  \"10.0.0.5:3000\"\n  \"10.0.0.6:3000\"\n]",
                3,
                "expected `,` or `]`",
            ),
            (
                "[\n  { \"address\": \"10.0.0.5:3000\", \"drainig\": true }\n]",
                2,
                "unknown field `drainig`",
            ),
            (
                "[\n  { \"address\": \"10.0.0.5:3000\", \"draining\": \"yes\" }\n]",
                2,
                "expected a boolean",
            ),
            ("[\n  3000\n]", 2, "expected a target"),
            (
                "[\n  { \"draining\": true }\n]",
                2,
                "missing field `address`",
            ),
            (
                "[\n  \"10.0.0.5:3000\",\n  { \"address\": \"10.0.0.5:3000\" }\n]",
                3,
                "target 10.0.0.5:3000 is listed twice",
            ),
            ("{ \"targets\": [] }", 1, "expected an array of targets"),
            ("[\"10.0.0.5:3000\"", 1, "EOF while parsing a list"),
        ];
        for (text, want_line, want) in cases {
            let (line, _, message) = invalid_at(json(text));
            assert_eq!(line, want_line, "{text:?}: {message}");
            assert!(message.contains(want), "{text:?}: {message}");
        }
    }

    #[test]
    fn a_bad_text_line_is_an_error_at_its_line_and_column() {
        let (line, column, message) = invalid_at(lines("10.0.0.5:3000\n# comment\n   10.0.0.6\n"));
        assert_eq!((line, column), (3, 4));
        assert!(
            message.starts_with("invalid target \"10.0.0.6\""),
            "{message}"
        );
        let (line, _, message) = invalid_at(lines("10.0.0.5:3000 10.0.0.6:3000\n"));
        assert_eq!(line, 1);
        assert!(message.contains("one IP:port a line"), "{message}");
        let (line, _, message) = invalid_at(lines("10.0.0.5:3000\n\n10.0.0.5:3000\n"));
        assert_eq!(line, 3);
        assert_eq!(
            message,
            "target 10.0.0.5:3000 is listed twice (first at line 1)"
        );
        assert_eq!(
            lines("app.internal:80\n").unwrap_err().to_string(),
            "targets.txt:1:1: invalid target \"app.internal:80\": expected IP:port, like \"10.0.1.12:3000\" or \"[::1]:3000\""
        );
    }

    // === FileSource ===

    fn source(dir: &tempfile::TempDir, name: &str) -> (FileSource, PathBuf) {
        let path = dir.path().join(name);
        let source = FileSource::new(FileDiscovery {
            path: path.clone(),
            interval: DEFAULT_INTERVAL,
        });
        (source, path)
    }

    /// Writes a new file and renames it over `path`, as careful tools do.
    fn replace(path: &Path, text: &str) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[tokio::test]
    async fn it_should_not_read_the_file_again_while_its_stamp_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let (mut source, path) = source(&dir, "targets.txt");
        std::fs::write(&path, "10.0.0.5:3000\n").unwrap();
        let first = source.look().await.unwrap();
        assert_eq!(summary(&first), ["10.0.0.5:3000"]);
        // Garbage of the same size written in place, its modification time put back:
        // the stamp is unchanged, so the file is not read again.
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        std::io::Write::write_all(&mut &file, b"not a target\n").unwrap();
        file.set_modified(modified).unwrap();
        drop(file);
        assert_eq!(source.look().await.unwrap(), first);
        // A newer modification time: read again, and refused.
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(modified + Duration::from_secs(1))
            .unwrap();
        let (line, _, _) = invalid_at(source.look().await);
        assert_eq!(line, 1);
    }

    #[tokio::test]
    async fn it_should_see_a_file_renamed_over_it_even_with_the_same_size_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let (mut source, path) = source(&dir, "targets.json");
        std::fs::write(&path, r#"["10.0.0.5:3000"]"#).unwrap();
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert_eq!(summary(&source.look().await.unwrap()), ["10.0.0.5:3000"]);
        // As `rsync -t` leaves it: another inode, same size and modification time.
        let tmp = dir.path().join("targets.json.tmp");
        std::fs::write(&tmp, r#"["10.0.0.6:3000"]"#).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&tmp)
            .unwrap()
            .set_modified(modified)
            .unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(summary(&source.look().await.unwrap()), ["10.0.0.6:3000"]);
    }

    #[tokio::test]
    async fn a_missing_file_is_an_error_until_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let (mut source, path) = source(&dir, "targets.json");
        let e = source.look().await.unwrap_err();
        assert!(matches!(e, FileError::Read { .. }), "{e:?}");
        assert!(
            e.to_string()
                .starts_with(&format!("{}: cannot read: ", path.display())),
            "{e}"
        );
        replace(&path, "[\"10.0.0.5:3000\", \"10.0.0.6:3000\"]");
        assert_eq!(source.look().await.unwrap().len(), 2);
        // Removed again: an error, not an empty group.
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(source.look().await, Err(FileError::Read { .. })));
        replace(&path, "[]");
        assert_eq!(source.look().await.unwrap(), []);
    }
}
