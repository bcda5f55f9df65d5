//! [`TestHost`]: host services for unit tests that hand out prepared nodes.

use super::memfile::MemFile;
use crate::error::{BlockError, ErrorKind, Result};
use crate::host::{ChildRequest, ChildRole, HostServices};
use crate::node::BlockNode;
use crate::types::Preallocation;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Nodes {
    /// Nodes by (role, file name).
    by_role: HashMap<(ChildRole, String), Arc<dyn BlockNode>>,
    /// Files made by `create_file`, openable in any protocol role.
    created: HashMap<String, Arc<MemFile>>,
    /// Every request passed to `open_child`, in order.
    opened: Vec<ChildRequest>,
}

/// [`HostServices`] for unit tests.
///
/// A test registers the nodes a driver may open ([`TestHost::add_file`],
/// [`TestHost::add_node`]) under a child role and file name; `open_child`
/// hands them out and records each request ([`TestHost::opened`]).
/// `create_file` makes a new [`MemFile`] that later opens of the same name
/// (as `File` or `DataFile`) return. Unknown names fail with `NotFound`.
#[derive(Default)]
pub struct TestHost {
    nodes: Mutex<Nodes>,
}

impl TestHost {
    /// A host with no nodes.
    pub fn new() -> TestHost {
        TestHost::default()
    }

    /// Registers `file` as the child named `name` in `role` and returns it,
    /// shared, for assertions.
    pub fn add_file(&self, role: ChildRole, name: &str, file: MemFile) -> Arc<MemFile> {
        let file = Arc::new(file);
        self.add_node(role, name, file.clone());
        file
    }

    /// Registers any node as the child named `name` in `role`.
    pub fn add_node(&self, role: ChildRole, name: &str, node: Arc<dyn BlockNode>) {
        self.lock().by_role.insert((role, name.to_string()), node);
    }

    /// The file `create_file` made under `name`, if any.
    pub fn created_file(&self, name: &str) -> Option<Arc<MemFile>> {
        self.lock().created.get(name).cloned()
    }

    /// Every request `open_child` received, in order.
    pub fn opened(&self) -> Vec<ChildRequest> {
        self.lock().opened.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Nodes> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl HostServices for TestHost {
    fn open_child(&self, req: &ChildRequest) -> Result<Arc<dyn BlockNode>> {
        let mut nodes = self.lock();
        nodes.opened.push(req.clone());
        if let Some(n) = nodes.by_role.get(&(req.role, req.filename.clone())) {
            return Ok(n.clone());
        }
        if req.role != ChildRole::Backing {
            if let Some(f) = nodes.created.get(&req.filename) {
                return Ok(f.clone());
            }
        }
        Err(BlockError::new(
            ErrorKind::NotFound,
            "open",
            format!(
                "no test node for {} child '{}'",
                req.role.as_str(),
                req.filename
            ),
        ))
    }

    fn create_file(&self, filename: &str, size: u64, _prealloc: Preallocation) -> Result<()> {
        let file = Arc::new(MemFile::new(size));
        self.lock().created.insert(filename.to_string(), file);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::BlockNodeExt;

    #[test]
    fn hands_out_nodes_by_role_and_name() {
        let host = TestHost::new();
        let f = host.add_file(ChildRole::File, "a.img", MemFile::new(4096));
        let b = host.add_file(ChildRole::Backing, "a.img", MemFile::with_data(&[5; 16]));
        let got = host
            .open_child(&ChildRequest::new(ChildRole::File, "a.img"))
            .unwrap();
        got.write_at(0, b"x").unwrap();
        assert_eq!(f.peek(0, 1), b"x");
        let got = host
            .open_child(&ChildRequest::new(ChildRole::Backing, "a.img"))
            .unwrap();
        assert_eq!(got.length().unwrap(), 16);
        assert_eq!(b.stats().reads, 0);
        let e = host
            .open_child(&ChildRequest::new(ChildRole::DataFile, "a.img"))
            .err()
            .unwrap();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(host.opened().len(), 3);
    }

    #[test]
    fn created_files_open_as_protocol_children() {
        let host = TestHost::new();
        host.create_file("new.img", 512, Preallocation::Off)
            .unwrap();
        let n = host
            .open_child(&ChildRequest::new(ChildRole::File, "new.img"))
            .unwrap();
        assert_eq!(n.length().unwrap(), 512);
        assert!(host
            .open_child(&ChildRequest::new(ChildRole::Backing, "new.img"))
            .is_err());
        assert_eq!(host.created_file("new.img").unwrap().length().unwrap(), 512);
    }
}
