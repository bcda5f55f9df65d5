//! The node graph: opening a node with its children through the registry,
//! probing formats, resolving backing names, detecting backing loops, and the
//! [`HostServices`] drivers call back into.

use block_core::{
    BlockError, BlockNode, BlockNodeExt, ChildRequest, ChildRole, DriverKind, ErrorKind,
    HostServices, OpenFlags, OpenRequest, Operation, OptionValues, Preallocation, ProbeInput,
    RegisteredDriver, Registry, Result, PROBE_HEAD_SIZE, PROBE_TAIL_SIZE,
};
use std::sync::{Arc, Mutex, Weak};

/// The deepest backing chain the host opens.
pub const MAX_CHAIN_DEPTH: usize = 128;

/// One node of an open graph.
pub struct GraphNode {
    /// The driver's node.
    pub node: Arc<dyn BlockNode>,
    /// The driver name.
    pub driver: String,
    /// The file name the node was opened with.
    pub filename: String,
    /// The role relative to its parent (`None` for the root).
    pub role: Option<ChildRole>,
    /// True when the format was chosen by probing and came out raw.
    pub probed_raw: bool,
    /// Children the driver opened, in order.
    pub children: Mutex<ChildList>,
}

impl GraphNode {
    /// The child in `role`, if any.
    pub fn child(&self, role: ChildRole) -> Option<Arc<GraphNode>> {
        self.lock_children()
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, c)| c.clone())
    }

    /// The backing node, if any.
    pub fn backing(&self) -> Option<Arc<GraphNode>> {
        self.child(ChildRole::Backing)
    }

    /// A snapshot of the children list.
    pub fn children(&self) -> ChildList {
        self.lock_children().clone()
    }

    fn lock_children(&self) -> std::sync::MutexGuard<'_, ChildList> {
        self.children.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The children of a node, with their roles.
type ChildList = Vec<(ChildRole, Arc<GraphNode>)>;

/// What to open.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// File name.
    pub filename: String,
    /// Driver name; `None` probes (formats) or picks the protocol.
    pub format: Option<String>,
    /// Open flags.
    pub flags: OpenFlags,
    /// Driver options.
    pub options: Vec<(String, String)>,
    /// The protocol driver of the node's `file` child (`file.driver` of an
    /// image specification); `None` picks it from the file name.
    pub file_driver: Option<String>,
    /// Options of the node's `file` child (`file.*` of a specification).
    pub file_options: Vec<(String, String)>,
}

impl NodeSpec {
    /// A spec for `filename` with no child settings.
    pub fn new(filename: impl Into<String>, format: Option<String>, flags: OpenFlags) -> NodeSpec {
        NodeSpec {
            filename: filename.into(),
            format,
            flags,
            options: Vec::new(),
            file_driver: None,
            file_options: Vec::new(),
        }
    }

    fn has_file_settings(&self) -> bool {
        self.file_driver.is_some() || !self.file_options.is_empty()
    }
}

/// Context shared down one open: the canonical names of the images above
/// (for loop detection).
#[derive(Clone, Default)]
struct Chain {
    names: Vec<String>,
}

fn canonical(name: &str) -> String {
    std::fs::canonicalize(name)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| name.to_string())
}

/// Opens a node (and, through the driver, its children).
pub fn open_node(registry: &Arc<Registry>, spec: &NodeSpec) -> Result<Arc<GraphNode>> {
    open_with_chain(registry, spec, None, &Chain::default())
}

fn open_with_chain(
    registry: &Arc<Registry>,
    spec: &NodeSpec,
    role: Option<ChildRole>,
    chain: &Chain,
) -> Result<Arc<GraphNode>> {
    let protocol_only = role.is_some_and(ChildRole::is_protocol);
    // An explicitly named driver always wins.
    if let Some(fmt) = &spec.format {
        let d = registry.get(fmt).ok_or_else(|| {
            BlockError::new(
                ErrorKind::NotFound,
                "open",
                format!("Unknown driver '{fmt}'"),
            )
            .in_file(&spec.filename)
        })?;
        if protocol_only && d.driver.kind() != DriverKind::Protocol {
            return Err(BlockError::invalid(
                "open",
                format!(
                    "'{fmt}' is a format; a {} child needs a protocol",
                    role.map(|r| r.as_str()).unwrap_or("file")
                ),
            )
            .in_file(&spec.filename));
        }
        return open_driver(registry, spec, fmt, role, chain, None, false);
    }
    let proto_name = match &spec.file_driver {
        Some(d) if !protocol_only => d.clone(),
        _ => find_protocol(registry, &spec.filename)?
            .driver
            .name()
            .to_string(),
    };
    if protocol_only {
        return open_driver(registry, spec, &proto_name, role, chain, None, false);
    }
    // Open the protocol node, probe its content, then hand the node to the
    // format. The spec's options are the format's; the protocol gets the
    // `file.*` ones.
    let proto_spec = NodeSpec {
        options: spec.file_options.clone(),
        ..NodeSpec::new(spec.filename.clone(), None, spec.flags)
    };
    if registry.get(&proto_name).is_none() {
        return Err(BlockError::new(
            ErrorKind::NotFound,
            "",
            format!("Unknown driver '{proto_name}'"),
        ));
    }
    let file = open_driver(
        registry,
        &proto_spec,
        &proto_name,
        Some(ChildRole::File),
        chain,
        None,
        false,
    )?;
    let fmt = if spec.flags.contains(OpenFlags::NO_PROBE) {
        "raw".to_string()
    } else {
        probe_format(registry, &file, &spec.filename)?
    };
    if registry.get(&fmt).is_none() {
        // No format driver at all: the protocol node is the image.
        return Ok(file);
    }
    let probed_raw = fmt == "raw";
    open_driver(registry, spec, &fmt, role, chain, Some(file), probed_raw)
}

/// The protocol prefix of a file name as QEMU's `path_has_protocol` sees
/// it: the text before a `:` that comes before any `/` or `\\`.
pub fn protocol_prefix(filename: &str) -> Option<&str> {
    let end = filename.find([':', '/', '\\'])?;
    (filename.as_bytes()[end] == b':').then(|| &filename[..end])
}

/// The protocol driver for a file name: the one whose prefix the name
/// carries, `file` for names without a prefix. A prefix no driver claims
/// is refused with QEMU's "Unknown protocol 'P'" (`bdrv_find_protocol`).
pub fn find_protocol<'a>(registry: &'a Registry, filename: &str) -> Result<&'a RegisteredDriver> {
    if let Some(p) = protocol_prefix(filename) {
        return registry
            .iter()
            .find(|d| {
                d.driver.kind() == DriverKind::Protocol
                    && d.driver.protocol_prefixes().iter().any(|x| x == p)
            })
            .ok_or_else(|| {
                BlockError::new(
                    ErrorKind::NotFound,
                    "open",
                    format!("Unknown protocol '{p}'"),
                )
                .in_file(filename)
            });
    }
    registry.get("file").ok_or_else(|| {
        BlockError::new(
            ErrorKind::NotFound,
            "open",
            "no protocol driver (is 'file' registered?)",
        )
        .in_file(filename)
    })
}

/// Reads the head and tail of a protocol node and asks every format driver.
pub fn probe_format(registry: &Registry, file: &GraphNode, filename: &str) -> Result<String> {
    let size = file.node.length()?;
    let head_len = size.min(PROBE_HEAD_SIZE as u64) as usize;
    let mut head = vec![0u8; head_len];
    file.node.read_at(0, &mut head)?;
    let tail_len = size.min(PROBE_TAIL_SIZE as u64) as usize;
    let mut tail = vec![0u8; tail_len];
    file.node.read_at(size - tail_len as u64, &mut tail)?;
    let input = ProbeInput {
        head: &head,
        tail: &tail,
        file_size: size,
        filename,
    };
    let fmt = match registry.probe(&input)? {
        Some((d, score)) => {
            log::debug!("probed {filename}: {} (score {score})", d.driver.name());
            d.driver.name().to_string()
        }
        None => "raw".to_string(),
    };
    if fmt == "raw" {
        if let Some(f) = crate::foreign::detect(&input) {
            if registry.get(f.name).is_none() {
                return Err(BlockError::new(
                    ErrorKind::Unsupported,
                    "open",
                    crate::foreign::refusal(&f),
                )
                .in_file(filename));
            }
        }
    }
    Ok(fmt)
}

fn open_driver(
    registry: &Arc<Registry>,
    spec: &NodeSpec,
    driver: &str,
    role: Option<ChildRole>,
    chain: &Chain,
    preopened_file: Option<Arc<GraphNode>>,
    probed_raw: bool,
) -> Result<Arc<GraphNode>> {
    let d = registry
        .get(driver)
        .ok_or_else(|| {
            BlockError::new(
                ErrorKind::NotFound,
                "open",
                format!("Unknown driver '{driver}'"),
            )
        })?
        .driver
        .clone();
    let mut chain = chain.clone();
    if d.kind() == DriverKind::Format {
        chain.names.push(canonical(&spec.filename));
    }
    let services = Arc::new(GraphServices {
        registry: registry.clone(),
        chain,
        parent_flags: spec.flags,
        file_override: spec
            .has_file_settings()
            .then(|| (spec.file_driver.clone(), spec.file_options.clone())),
        protocol_create_options: Vec::new(),
        preopened_file: Mutex::new(preopened_file),
        children: Arc::new(Mutex::new(Vec::new())),
        attach_to: Mutex::new(None),
        record_children: true,
    });
    let req = OpenRequest {
        filename: spec.filename.clone(),
        options: spec.options.clone(),
        flags: spec.flags,
    };
    let node = d
        .open(&req, services.clone())
        .map_err(|e| e.in_file(&spec.filename))?;
    let children =
        std::mem::take(&mut *services.children.lock().unwrap_or_else(|p| p.into_inner()));
    let gn = Arc::new(GraphNode {
        node: Arc::from(node),
        driver: driver.to_string(),
        filename: spec.filename.clone(),
        role,
        probed_raw,
        children: Mutex::new(children),
    });
    // Children opened later (after open returned) attach to this node.
    *services.attach_to.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::downgrade(&gn));
    Ok(gn)
}

/// The driver (`None`: by file name) and options of a `file` child named
/// by an image specification.
type FileOverride = (Option<String>, Vec<(String, String)>);

/// The services handed to one driver instance.
struct GraphServices {
    registry: Arc<Registry>,
    chain: Chain,
    parent_flags: OpenFlags,
    /// The driver and options of the `file` child from an image
    /// specification, applied when the driver opens that child.
    file_override: Option<FileOverride>,
    /// Protocol create options (`nocow`, ...) for files a format creates.
    protocol_create_options: Vec<(String, String)>,
    preopened_file: Mutex<Option<Arc<GraphNode>>>,
    children: Arc<Mutex<ChildList>>,
    attach_to: Mutex<Option<Weak<GraphNode>>>,
    /// False for services without a graph (create): children opened through
    /// them belong to the driver alone and close when it drops them.
    record_children: bool,
}

impl GraphServices {
    fn record(&self, role: ChildRole, child: Arc<GraphNode>) {
        if !self.record_children {
            return;
        }
        if let Some(parent) = self
            .attach_to
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|w| w.upgrade())
        {
            parent.lock_children().push((role, child));
        } else {
            self.children
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((role, child));
        }
    }
}

impl HostServices for GraphServices {
    fn open_child(&self, req: &ChildRequest) -> Result<Arc<dyn BlockNode>> {
        let filename = block_core::resolve_relative(&req.filename, req.relative_to.as_deref());
        if req.role == ChildRole::File {
            let mut pre = self
                .preopened_file
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(f) = pre.take() {
                if f.filename == filename {
                    let node = f.node.clone();
                    self.record(ChildRole::File, f);
                    return Ok(node);
                }
            }
        }
        let mut flags = req.flags;
        // Inherited properties a driver may forget to pass down.
        for inherited in [
            OpenFlags::INACTIVE,
            OpenFlags::FORCE_SHARE,
            OpenFlags::NO_LOCK,
        ] {
            if self.parent_flags.contains(inherited) {
                flags = flags.with(inherited);
            }
        }
        if self.parent_flags.contains(OpenFlags::READ_ONLY) {
            flags = flags.with(OpenFlags::READ_ONLY);
        }
        // Exclusive use covers the storage of the image (file, data file),
        // never its backing files, which stay shareable read-only bases.
        if req.role == ChildRole::Backing {
            flags = flags.without(OpenFlags::EXCLUSIVE);
        } else if self.parent_flags.contains(OpenFlags::EXCLUSIVE) {
            flags = flags.with(OpenFlags::EXCLUSIVE);
        }
        if req.role == ChildRole::Backing {
            let canon = canonical(&filename);
            if let Some(pos) = self.chain.names.iter().position(|n| *n == canon) {
                let mut path: Vec<&str> =
                    self.chain.names[pos..].iter().map(|s| s.as_str()).collect();
                path.push(&canon);
                return Err(BlockError::new(
                    ErrorKind::Loop,
                    "open backing file",
                    format!("backing chain loop detected: {}", path.join(" -> ")),
                )
                .in_file(&filename));
            }
            if self.chain.names.len() >= MAX_CHAIN_DEPTH {
                return Err(BlockError::new(
                    ErrorKind::OutOfRange,
                    "open backing file",
                    format!("backing chain deeper than {MAX_CHAIN_DEPTH} images"),
                )
                .in_file(&filename));
            }
        }
        let mut spec = NodeSpec {
            options: req.options.clone(),
            ..NodeSpec::new(filename.clone(), req.format.clone(), flags)
        };
        if req.role == ChildRole::File {
            if let Some((driver, options)) = &self.file_override {
                if driver.is_some() {
                    spec.format = driver.clone();
                }
                spec.options.extend(options.iter().cloned());
            }
        }
        let child =
            open_with_chain(&self.registry, &spec, Some(req.role), &self.chain).map_err(|e| {
                if req.role == ChildRole::Backing && e.kind != ErrorKind::Loop {
                    e.context("Could not open backing file")
                } else if req.role == ChildRole::DataFile && e.file.as_deref() == Some(&filename) {
                    // The data file's own words ("Could not open 'D':
                    // REASON" from the file protocol) are the reason the
                    // image's open gives, without their file and operation.
                    let mut e = e;
                    e.op = Operation::Unspecified;
                    e.file = None;
                    e
                } else {
                    e
                }
            })?;
        let node = child.node.clone();
        self.record(req.role, child);
        Ok(node)
    }

    fn create_file(&self, filename: &str, size: u64, prealloc: Preallocation) -> Result<()> {
        create_protocol_file_with(
            &self.registry,
            filename,
            size,
            prealloc,
            &self.protocol_create_options,
        )
    }
}

/// Creates a protocol-level file through the protocol driver for its name.
pub fn create_protocol_file(
    registry: &Arc<Registry>,
    filename: &str,
    size: u64,
    prealloc: Preallocation,
) -> Result<()> {
    create_protocol_file_with(registry, filename, size, prealloc, &[])
}

/// As [`create_protocol_file`], with further protocol create options.
pub fn create_protocol_file_with(
    registry: &Arc<Registry>,
    filename: &str,
    size: u64,
    prealloc: Preallocation,
    extra: &[(String, String)],
) -> Result<()> {
    let proto = find_protocol(registry, filename)?;
    let schema = proto.driver.create_options();
    let mut pairs = vec![("size".to_string(), size.to_string())];
    if prealloc != Preallocation::Off {
        pairs.push(("preallocation".to_string(), prealloc.as_str().to_string()));
    }
    pairs.extend(extra.iter().cloned());
    let opts = OptionValues::parse(&schema, &pairs).map_err(|e| e.in_file(filename))?;
    proto
        .driver
        .create(filename, &opts, services_for(registry))
        .map_err(|e| e.in_file(filename))
}

/// Host services with no parent (for `create`).
pub fn services_for(registry: &Arc<Registry>) -> Arc<dyn HostServices> {
    services_for_create(registry, Vec::new())
}

/// Host services for `create` whose protocol files get `protocol_options`.
pub fn services_for_create(
    registry: &Arc<Registry>,
    protocol_options: Vec<(String, String)>,
) -> Arc<dyn HostServices> {
    Arc::new(GraphServices {
        registry: registry.clone(),
        chain: Chain::default(),
        parent_flags: OpenFlags::NONE,
        file_override: None,
        protocol_create_options: protocol_options,
        preopened_file: Mutex::new(None),
        children: Arc::new(Mutex::new(Vec::new())),
        attach_to: Mutex::new(None),
        record_children: false,
    })
}
