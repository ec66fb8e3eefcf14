//! socket: makes the control socket (mode 0660, the server's group) and
//! decides which peers it admits (`SO_PEERCRED`). Binding only: the
//! protocol and the commands are elsewhere.

use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::{Gid, Uid, User};
use tokio::net::{UnixListener, UnixStream};

/// Why the control socket could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SocketError {
    /// Another server answers on it.
    #[error("control socket {path}: another mailotp already listens there")]
    InUse {
        /// The path.
        path: PathBuf,
    },
    /// Something that is not a socket has the name.
    #[error("control socket {path}: the path exists and is not a socket")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The kernel refused (no such directory, no permission).
    #[error("control socket {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A bound control socket; its file is removed when dropped, unless another
/// server replaced it meanwhile.
pub(crate) struct Bound {
    pub listener: UnixListener,
    pub path: PathBuf,
    inode: u64,
}

impl Drop for Bound {
    fn drop(&mut self) {
        if std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds `path`: a stale socket (nobody answers) is replaced, a live one is
/// left alone. The file gets mode 0660 whatever the umask.
pub(crate) async fn bind(path: &Path) -> Result<Bound, SocketError> {
    let io = |source| SocketError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(SocketError::NotASocket {
                path: path.to_path_buf(),
            })
        }
        Ok(_) => {
            if UnixStream::connect(path).await.is_ok() {
                return Err(SocketError::InUse {
                    path: path.to_path_buf(),
                });
            }
            std::fs::remove_file(path).map_err(io)?;
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io)?;
    let inode = std::fs::metadata(path).map_err(io)?.ino();
    Ok(Bound {
        listener,
        path: path.to_path_buf(),
        inode,
    })
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
}

/// The peer's credentials as the kernel recorded them at `connect`.
pub(crate) fn peer(stream: &UnixStream) -> std::io::Result<Peer> {
    let creds = getsockopt(stream, PeerCredentials).map_err(std::io::Error::from)?;
    Ok(Peer {
        uid: creds.uid(),
        gid: creds.gid(),
        pid: creds.pid(),
    })
}

/// Whether `peer` may use the socket at `path`: root, the server's own user,
/// or a member of the socket's group (primary or supplementary).
///
/// Supplementary groups come from the user database (`getgrouplist`), not
/// from `/proc/<pid>/status`: under the unit's `ProtectProc=invisible` the
/// server cannot see other users' processes, and the kernel has already
/// checked the process's own groups against the 0660 mode at `connect`.
pub(crate) fn admitted(peer: &Peer, path: &Path) -> bool {
    if peer.uid == 0 || peer.uid == Uid::effective().as_raw() {
        return true;
    }
    let group = std::fs::metadata(path).map_or(Gid::effective().as_raw(), |m| m.gid());
    if peer.gid == group {
        return true;
    }
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(peer.uid)) else {
        return false;
    };
    let Ok(name) = std::ffi::CString::new(user.name) else {
        return false;
    };
    nix::unistd::getgrouplist(&name, Gid::from_raw(peer.gid))
        .is_ok_and(|groups| groups.iter().any(|g| g.as_raw() == group))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stale_socket_is_replaced_a_live_one_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let bound = bind(&path).await.expect("the stale file is replaced");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        assert!(matches!(bind(&path).await, Err(SocketError::InUse { .. })));
        assert!(path.exists(), "the live socket stays");
        drop(bound);
        assert!(!path.exists(), "removed on stop");
    }

    #[tokio::test]
    async fn a_file_or_a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ctl.sock");
        std::fs::write(&file, "not a socket").unwrap();
        assert!(matches!(bind(&file).await, Err(SocketError::NotASocket { .. })));
        let missing = dir.path().join("no-such-dir/ctl.sock");
        assert!(matches!(bind(&missing).await, Err(SocketError::Io { .. })));
    }

    #[test]
    fn root_the_servers_user_and_the_sockets_group_are_admitted() {
        let dir = tempfile::tempdir().unwrap();
        let group = std::fs::metadata(dir.path()).unwrap().gid();
        let peer = |uid, gid| Peer { uid, gid, pid: 1 };
        assert!(admitted(&peer(0, 12345), dir.path()));
        assert!(admitted(&peer(Uid::effective().as_raw(), 12345), dir.path()));
        assert!(admitted(&peer(54321, group), dir.path()), "primary group");
        let nobody = User::from_name("nobody")
            .unwrap()
            .map(|u| (u.uid.as_raw(), u.gid.as_raw()));
        if let Some((uid, gid)) = nobody.filter(|(uid, gid)| *uid != Uid::effective().as_raw() && *gid != group) {
            assert!(!admitted(&peer(uid, gid), dir.path()));
        }
    }
}
