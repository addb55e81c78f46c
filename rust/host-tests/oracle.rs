//! Oracle: thin-provisioning-tools 0.9.0 (`thin_check`, `thin_dump`,
//! `thin_restore`) driven from tests, and a plain model of thin metadata
//! with a small hand-rolled reader and writer for the tools' XML format.
//!
//! XML as written by `thin_dump` 0.9.0 (checked by running the tools):
//!
//! ```text
//! <superblock uuid="" time="3" transaction="5" flags="0" version="2" data_block_size="128" nr_data_blocks="1000">
//!   <device dev_id="1" mapped_blocks="4" transaction="2" creation_time="0" snap_time="1">
//!     <single_mapping origin_block="0" data_block="10" time="0"/>
//!     <range_mapping origin_begin="1" data_begin="11" length="2" time="1"/>
//!   </device>
//!   <device dev_id="5" mapped_blocks="0" transaction="3" creation_time="1" snap_time="1">
//!   </device>
//! </superblock>
//! ```
//!
//! `thin_restore` 0.9.0 does not store the uuid (it dumps back as `""`),
//! ignores the XML's `mapped_blocks` (it stores the number of mappings it
//! inserted) and cannot create a metadata snapshot.  The tools live in `/usr/sbin` unless
//! the environment variable `THIN_TOOLS_DIR` names another directory.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use pdata::pdata::block_manager::BLOCK_SIZE;

use crate::mem_bm::Image;

/// Result of oracle operations; the error is a human-readable message.
pub type OracleResult<T> = Result<T, String>;

// ---------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------

/// One thin device as the tools see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Device {
    /// Mapped block count recorded in the device details.
    pub mapped_blocks: u64,
    /// Transaction id of the device's last change.
    pub transaction: u64,
    /// Pool time at creation.
    pub creation_time: u32,
    /// Pool time of the last snapshot involving the device.
    pub snap_time: u32,
    /// Mappings: virtual (origin) block -> (data block, time).
    pub mappings: BTreeMap<u64, (u64, u32)>,
}

impl Device {
    /// A device with the given details and no mappings (`mapped_blocks` 0).
    pub fn new(transaction: u64, creation_time: u32, snap_time: u32) -> Device {
        Device {
            mapped_blocks: 0,
            transaction,
            creation_time,
            snap_time,
            mappings: BTreeMap::new(),
        }
    }

    /// Adds a mapping and keeps `mapped_blocks` equal to the mapping count.
    pub fn map(&mut self, origin: u64, data: u64, time: u32) {
        self.mappings.insert(origin, (data, time));
        self.mapped_blocks = self.mappings.len() as u64;
    }
}

/// The whole metadata as `thin_dump` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    /// Superblock uuid (not stored by `thin_restore` 0.9.0).
    pub uuid: String,
    /// Pool time.
    pub time: u32,
    /// Transaction id.
    pub transaction: u64,
    /// Superblock flags.
    pub flags: u32,
    /// Metadata format version.
    pub version: u32,
    /// Data block size in sectors.
    pub data_block_size: u32,
    /// Number of data blocks of the pool.
    pub nr_data_blocks: u64,
    /// Devices by id.
    pub devices: BTreeMap<u64, Device>,
}

impl Model {
    /// An empty pool: version 2, flags 0, empty uuid.
    pub fn new(data_block_size: u32, nr_data_blocks: u64) -> Model {
        Model {
            uuid: String::new(),
            time: 0,
            transaction: 0,
            flags: 0,
            version: 2,
            data_block_size,
            nr_data_blocks,
            devices: BTreeMap::new(),
        }
    }

    /// Total number of mappings over all devices.
    pub fn nr_mappings(&self) -> u64 {
        self.devices.values().map(|d| d.mappings.len() as u64).sum()
    }

    /// How many mappings point at each data block.
    pub fn data_ref_counts(&self) -> BTreeMap<u64, u32> {
        let mut m = BTreeMap::new();
        for d in self.devices.values() {
            for &(data, _) in d.mappings.values() {
                *m.entry(data).or_insert(0) += 1;
            }
        }
        m
    }

    /// Consistency problems a checker would complain about: mapped block
    /// counts that differ from the mappings, data blocks out of range.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (id, d) in &self.devices {
            if d.mapped_blocks != d.mappings.len() as u64 {
                out.push(format!(
                    "device {id}: mapped_blocks {} but {} mappings",
                    d.mapped_blocks,
                    d.mappings.len()
                ));
            }
            if let Some((o, (data, _))) = d
                .mappings
                .iter()
                .find(|(_, (x, _))| *x >= self.nr_data_blocks)
            {
                out.push(format!(
                    "device {id}: block {o} maps to {data} >= nr_data_blocks {}",
                    self.nr_data_blocks
                ));
            }
        }
        out
    }

    /// Human-readable differences from `other` (at most `limit` lines, the
    /// last one saying how many more), empty when equal.  For assertion
    /// messages on big models.
    pub fn diff(&self, other: &Model, limit: usize) -> Vec<String> {
        let mut out = Vec::new();
        let sb = |m: &Model| {
            (
                m.uuid.clone(),
                m.time,
                m.transaction,
                m.flags,
                m.version,
                m.data_block_size,
                m.nr_data_blocks,
            )
        };
        if sb(self) != sb(other) {
            out.push(format!(
                "superblock (uuid, time, transaction, flags, version, data_block_size, nr_data_blocks): {:?} != {:?}",
                sb(self),
                sb(other)
            ));
        }
        let ids: std::collections::BTreeSet<u64> = self
            .devices
            .keys()
            .chain(other.devices.keys())
            .copied()
            .collect();
        for id in ids {
            let (a, b) = match (self.devices.get(&id), other.devices.get(&id)) {
                (Some(a), Some(b)) => (a, b),
                (a, b) => {
                    out.push(format!(
                        "device {id}: present {} != {}",
                        a.is_some(),
                        b.is_some()
                    ));
                    continue;
                }
            };
            let det = |d: &Device| (d.mapped_blocks, d.transaction, d.creation_time, d.snap_time);
            if det(a) != det(b) {
                out.push(format!(
                    "device {id} (mapped_blocks, transaction, creation_time, snap_time): {:?} != {:?}",
                    det(a),
                    det(b)
                ));
            }
            let keys: std::collections::BTreeSet<u64> = a
                .mappings
                .keys()
                .chain(b.mappings.keys())
                .copied()
                .collect();
            for k in keys {
                let (x, y) = (a.mappings.get(&k), b.mappings.get(&k));
                if x != y {
                    out.push(format!("device {id} block {k}: {x:?} != {y:?}"));
                }
            }
        }
        if out.len() > limit {
            let more = out.len() - limit;
            out.truncate(limit);
            out.push(format!("... and {more} more differences"));
        }
        out
    }

    /// Writes the model as tools XML, merging runs into `range_mapping`
    /// like `thin_dump` (consecutive origin and data blocks, same time).
    pub fn to_xml(&self) -> String {
        self.xml(true)
    }

    /// Writes the model as tools XML with one `single_mapping` per mapping.
    pub fn to_xml_singles(&self) -> String {
        self.xml(false)
    }

    fn xml(&self, ranges: bool) -> String {
        let mut s = String::with_capacity(256 + 64 * self.nr_mappings() as usize);
        let _ = writeln!(
            s,
            "<superblock uuid=\"{}\" time=\"{}\" transaction=\"{}\" flags=\"{}\" version=\"{}\" data_block_size=\"{}\" nr_data_blocks=\"{}\">",
            escape(&self.uuid),
            self.time,
            self.transaction,
            self.flags,
            self.version,
            self.data_block_size,
            self.nr_data_blocks
        );
        for (id, d) in &self.devices {
            let _ = writeln!(
                s,
                "  <device dev_id=\"{id}\" mapped_blocks=\"{}\" transaction=\"{}\" creation_time=\"{}\" snap_time=\"{}\">",
                d.mapped_blocks, d.transaction, d.creation_time, d.snap_time
            );
            let mut it = d.mappings.iter().peekable();
            while let Some((&o, &(data, time))) = it.next() {
                let mut len = 1u64;
                if ranges {
                    while let Some((&o2, &(d2, t2))) = it.peek() {
                        if o2 == o + len && d2 == data + len && t2 == time {
                            len += 1;
                            it.next();
                        } else {
                            break;
                        }
                    }
                }
                if len == 1 {
                    let _ = writeln!(
                        s,
                        "    <single_mapping origin_block=\"{o}\" data_block=\"{data}\" time=\"{time}\"/>"
                    );
                } else {
                    let _ = writeln!(
                        s,
                        "    <range_mapping origin_begin=\"{o}\" data_begin=\"{data}\" length=\"{len}\" time=\"{time}\"/>"
                    );
                }
            }
            s.push_str("  </device>\n");
        }
        s.push_str("</superblock>\n");
        s
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(s: &str) -> OracleResult<String> {
    if !s.contains('&') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after
            .find(';')
            .ok_or_else(|| format!("unterminated entity in {s:?}"))?;
        let name = &after[..end];
        match name {
            "amp" => out.push('&'),
            "lt" => out.push('<'),
            "gt" => out.push('>'),
            "quot" => out.push('"'),
            "apos" => out.push('\''),
            _ => {
                let code = if let Some(h) = name.strip_prefix("#x") {
                    u32::from_str_radix(h, 16).ok()
                } else if let Some(d) = name.strip_prefix('#') {
                    d.parse().ok()
                } else {
                    None
                };
                let c = code
                    .and_then(char::from_u32)
                    .ok_or_else(|| format!("unknown entity &{name}; in {s:?}"))?;
                out.push(c);
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

// ---------------------------------------------------------------------------
// XML reader
// ---------------------------------------------------------------------------

/// One XML tag.
#[derive(Debug)]
struct Tag<'a> {
    name: &'a str,
    attrs: Vec<(&'a str, String)>,
    closing: bool,
    self_closing: bool,
}

impl Tag<'_> {
    fn attr(&self, name: &str) -> OracleResult<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| format!("<{}> lacks attribute {name}", self.name))
    }

    fn num<T: std::str::FromStr>(&self, name: &str) -> OracleResult<T> {
        let v = self.attr(name)?;
        v.parse()
            .map_err(|_| format!("<{}> attribute {name}={v:?} is not a number", self.name))
    }
}

/// Splits `xml` into tags; text between tags must be whitespace.
fn tags(xml: &str) -> OracleResult<Vec<Tag<'_>>> {
    let mut out = Vec::new();
    let mut rest = xml;
    loop {
        let lt = match rest.find('<') {
            Some(i) => i,
            None => {
                if !rest.trim().is_empty() {
                    return Err(format!("text outside tags: {:?}", truncate(rest)));
                }
                return Ok(out);
            }
        };
        if !rest[..lt].trim().is_empty() {
            return Err(format!("unexpected text {:?}", truncate(&rest[..lt])));
        }
        rest = &rest[lt..];
        if let Some(r) = rest.strip_prefix("<!--") {
            let e = r.find("-->").ok_or("unterminated comment")?;
            rest = &r[e + 3..];
            continue;
        }
        if let Some(r) = rest.strip_prefix("<?") {
            let e = r.find("?>").ok_or("unterminated <? ?>")?;
            rest = &r[e + 2..];
            continue;
        }
        if rest.starts_with("<!") {
            let e = rest.find('>').ok_or("unterminated <!")?;
            rest = &rest[e + 1..];
            continue;
        }
        let (tag, after) = parse_tag(rest)?;
        out.push(tag);
        rest = after;
    }
}

fn truncate(s: &str) -> &str {
    let mut end = s.len().min(60);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Parses one tag at the start of `s` (which starts with '<').
fn parse_tag(s: &str) -> OracleResult<(Tag<'_>, &str)> {
    let mut p = &s[1..];
    let closing = if let Some(r) = p.strip_prefix('/') {
        p = r;
        true
    } else {
        false
    };
    let name_end = p
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .ok_or_else(|| format!("unterminated tag {:?}", truncate(s)))?;
    let name = &p[..name_end];
    if name.is_empty() {
        return Err(format!("empty tag name at {:?}", truncate(s)));
    }
    p = &p[name_end..];
    let mut attrs = Vec::new();
    loop {
        p = p.trim_start();
        if let Some(r) = p.strip_prefix("/>") {
            if closing {
                return Err(format!("</{name}/> is invalid"));
            }
            return Ok((
                Tag {
                    name,
                    attrs,
                    closing,
                    self_closing: true,
                },
                r,
            ));
        }
        if let Some(r) = p.strip_prefix('>') {
            return Ok((
                Tag {
                    name,
                    attrs,
                    closing,
                    self_closing: false,
                },
                r,
            ));
        }
        if closing {
            return Err(format!("attributes in closing tag </{name}>"));
        }
        let eq = p
            .find('=')
            .ok_or_else(|| format!("bad attribute in <{name}>: {:?}", truncate(p)))?;
        let an = p[..eq].trim();
        if an.is_empty() || an.contains(|c: char| c.is_whitespace() || c == '>' || c == '<') {
            return Err(format!("bad attribute name in <{name}>: {:?}", truncate(p)));
        }
        p = p[eq + 1..].trim_start();
        let q = p
            .chars()
            .next()
            .filter(|&c| c == '"' || c == '\'')
            .ok_or_else(|| format!("unquoted attribute {an} in <{name}>"))?;
        let close = p[1..]
            .find(q)
            .ok_or_else(|| format!("unterminated value of {an} in <{name}>"))?;
        let value = unescape(&p[1..1 + close])?;
        if attrs.iter().any(|(n, _)| *n == an) {
            return Err(format!("duplicate attribute {an} in <{name}>"));
        }
        attrs.push((an, value));
        p = &p[close + 2..];
    }
}

/// Parses `thin_dump` / `thin_restore` XML into a [`Model`].  Unknown
/// elements are errors (so a format the model cannot express is noticed).
/// Mappings must not repeat an origin block within a device.
pub fn parse_xml(xml: &str) -> OracleResult<Model> {
    let tags = tags(xml)?;
    let mut it = tags.into_iter();
    let sb = it.next().ok_or("empty XML")?;
    if sb.name != "superblock" || sb.closing {
        return Err(format!("expected <superblock>, got <{}>", sb.name));
    }
    let mut model = Model {
        uuid: sb.attr("uuid")?.to_string(),
        time: sb.num("time")?,
        transaction: sb.num("transaction")?,
        flags: sb
            .attrs
            .iter()
            .any(|(n, _)| *n == "flags")
            .then(|| sb.num("flags"))
            .transpose()?
            .unwrap_or(0),
        version: sb
            .attrs
            .iter()
            .any(|(n, _)| *n == "version")
            .then(|| sb.num("version"))
            .transpose()?
            .unwrap_or(1),
        data_block_size: sb.num("data_block_size")?,
        nr_data_blocks: sb.num("nr_data_blocks")?,
        devices: BTreeMap::new(),
    };
    let mut closed = sb.self_closing;
    let mut cur: Option<(u64, Device)> = None;
    for t in it {
        if closed {
            return Err(format!("<{}> after </superblock>", t.name));
        }
        match (t.name, t.closing, cur.is_some()) {
            ("superblock", true, false) => closed = true,
            ("device", false, false) => {
                let id: u64 = t.num("dev_id")?;
                let d = Device {
                    mapped_blocks: t.num("mapped_blocks")?,
                    transaction: t.num("transaction")?,
                    creation_time: t.num("creation_time")?,
                    snap_time: t.num("snap_time")?,
                    mappings: BTreeMap::new(),
                };
                if model.devices.contains_key(&id) {
                    return Err(format!("device {id} appears twice"));
                }
                if t.self_closing {
                    model.devices.insert(id, d);
                } else {
                    cur = Some((id, d));
                }
            }
            ("device", true, true) => {
                let (id, d) = cur.take().ok_or("unbalanced </device>")?;
                model.devices.insert(id, d);
            }
            ("single_mapping", false, true) => {
                let (id, d) = cur.as_mut().ok_or("mapping outside device")?;
                let o: u64 = t.num("origin_block")?;
                let v = (t.num("data_block")?, t.num("time")?);
                if d.mappings.insert(o, v).is_some() {
                    return Err(format!("device {id}: block {o} mapped twice"));
                }
            }
            ("range_mapping", false, true) => {
                let (id, d) = cur.as_mut().ok_or("mapping outside device")?;
                let o: u64 = t.num("origin_begin")?;
                let db: u64 = t.num("data_begin")?;
                let len: u64 = t.num("length")?;
                let time: u32 = t.num("time")?;
                for i in 0..len {
                    if d.mappings.insert(o + i, (db + i, time)).is_some() {
                        return Err(format!("device {id}: block {} mapped twice", o + i));
                    }
                }
            }
            (name, closing, in_dev) => {
                return Err(format!(
                    "unexpected <{}{name}> {}",
                    if closing { "/" } else { "" },
                    if in_dev {
                        "inside <device>"
                    } else {
                        "at top level"
                    }
                ))
            }
        }
    }
    if cur.is_some() || !closed {
        return Err("unterminated XML".into());
    }
    Ok(model)
}

// ---------------------------------------------------------------------------
// Running the tools
// ---------------------------------------------------------------------------

/// Exit status and output of a tool run.
#[derive(Clone, Debug)]
pub struct ToolOutput {
    /// Exit code (`None` if killed by a signal).
    pub status: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl ToolOutput {
    /// Whether the tool exited with status 0.
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// The value of a `KEY=VALUE` line on stdout (this `thin_check` build
    /// prints `TRANSACTION_ID=` and `METADATA_FREE_BLOCKS=` lines).
    pub fn value(&self, key: &str) -> Option<&str> {
        self.stdout.lines().find_map(|l| {
            l.strip_prefix(key)
                .and_then(|r| r.strip_prefix('='))
                .map(str::trim)
        })
    }

    /// stdout and stderr together, for assertion messages.
    pub fn text(&self) -> String {
        format!("status {:?}\n{}{}", self.status, self.stdout, self.stderr)
    }
}

/// Path of a tool (`$THIN_TOOLS_DIR/<name>`, default `/usr/sbin/<name>`).
pub fn tool_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("THIN_TOOLS_DIR").unwrap_or_else(|| "/usr/sbin".into());
    Path::new(&dir).join(name)
}

/// Whether `thin_check`, `thin_dump` and `thin_restore` are installed.
pub fn tools_available() -> bool {
    ["thin_check", "thin_dump", "thin_restore"]
        .iter()
        .all(|t| tool_path(t).exists())
}

/// Runs tool `name` with `args`.
pub fn run_tool(name: &str, args: &[&str]) -> OracleResult<ToolOutput> {
    let out = Command::new(tool_path(name))
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {name}: {e}"))?;
    Ok(ToolOutput {
        status: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// `thin_check [extra args] <path>`.
pub fn thin_check(path: &Path, extra: &[&str]) -> OracleResult<ToolOutput> {
    let p = path_str(path)?;
    let mut args: Vec<&str> = extra.to_vec();
    args.push(p);
    run_tool("thin_check", &args)
}

/// `thin_dump [extra args] <path>` and its XML (fails if the tool fails).
pub fn thin_dump_xml(path: &Path, extra: &[&str]) -> OracleResult<String> {
    let p = path_str(path)?;
    let mut args: Vec<&str> = extra.to_vec();
    args.push(p);
    let out = run_tool("thin_dump", &args)?;
    if !out.success() {
        return Err(format!("thin_dump {args:?} failed: {}", out.text()));
    }
    Ok(out.stdout)
}

/// Dumps the metadata in `path` into a [`Model`].
pub fn thin_dump(path: &Path) -> OracleResult<Model> {
    parse_xml(&thin_dump_xml(path, &[])?)
}

/// Dumps the metadata snapshot in `path` (`thin_dump -m`, or
/// `thin_dump -m <block>` when `block` is given).
pub fn thin_dump_snap(path: &Path, block: Option<u64>) -> OracleResult<Model> {
    let b = block.map(|b| b.to_string());
    let args: Vec<&str> = match &b {
        Some(b) => vec!["-m", b.as_str()],
        None => vec!["-m"],
    };
    parse_xml(&thin_dump_xml(path, &args)?)
}

/// Writes `model` as XML and runs `thin_restore -i <xml> -o <path>`, after
/// creating `path` with `size_bytes` bytes (zeroed).
pub fn thin_restore(model: &Model, path: &Path, size_bytes: u64) -> OracleResult<()> {
    let f = std::fs::File::create(path).map_err(|e| format!("create {path:?}: {e}"))?;
    f.set_len(size_bytes)
        .map_err(|e| format!("size {path:?}: {e}"))?;
    drop(f);
    let xml = TempFile::new("xml");
    std::fs::write(xml.path(), model.to_xml()).map_err(|e| format!("write xml: {e}"))?;
    let out = run_tool(
        "thin_restore",
        &["-i", path_str(xml.path())?, "-o", path_str(path)?],
    )?;
    if !out.success() {
        return Err(format!("thin_restore failed: {}", out.text()));
    }
    Ok(())
}

/// A metadata device image of `nr_blocks` blocks made by `thin_restore`
/// from `model`.
pub fn restore_image(model: &Model, nr_blocks: u64) -> OracleResult<Image> {
    let f = TempFile::new("meta");
    thin_restore(model, f.path(), nr_blocks * BLOCK_SIZE as u64)?;
    Image::load(f.path()).map_err(|e| format!("load image: {e}"))
}

/// `thin_check [extra args]` on an image.
pub fn check_image(image: &Image, extra: &[&str]) -> OracleResult<ToolOutput> {
    let f = TempFile::new("meta");
    image
        .save(f.path())
        .map_err(|e| format!("save image: {e}"))?;
    thin_check(f.path(), extra)
}

/// `thin_dump` of an image into a [`Model`].
pub fn dump_image(image: &Image) -> OracleResult<Model> {
    let f = TempFile::new("meta");
    image
        .save(f.path())
        .map_err(|e| format!("save image: {e}"))?;
    thin_dump(f.path())
}

/// `thin_dump -m [block]` of an image into a [`Model`].
pub fn dump_image_snap(image: &Image, block: Option<u64>) -> OracleResult<Model> {
    let f = TempFile::new("meta");
    image
        .save(f.path())
        .map_err(|e| format!("save image: {e}"))?;
    thin_dump_snap(f.path(), block)
}

fn path_str(p: &Path) -> OracleResult<&str> {
    p.to_str().ok_or_else(|| format!("non-UTF-8 path {p:?}"))
}

/// A uniquely named file in the temp directory, removed on drop.
pub struct TempFile {
    path: PathBuf,
}

impl TempFile {
    /// A new (not yet created) temp file name with `tag` in it.
    pub fn new(tag: &str) -> TempFile {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "host-tests-{}-{}-{n}.{tag}",
            std::process::id(),
            std::thread::current()
                .name()
                .unwrap_or("t")
                .chars()
                .rev()
                .take(40)
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect::<String>()
        ));
        TempFile { path }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
