//! tests/common's snapshot emits the one tree-snapshot format of every test layer: on the same
//! trees its text is byte for byte what script/lib/snapshot prints (the C tests, bats and Go
//! call the script).

mod common;

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

fn script(path: &Path) -> String {
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("script/lib/snapshot"))
        .arg(path)
        .output()
        .expect("run script/lib/snapshot");
    assert!(
        out.status.success(),
        "script/lib/snapshot {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn rust_snapshot_and_script_lib_snapshot_agree() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    std::fs::create_dir_all(root.join("usr/local/bin")).unwrap();
    std::fs::create_dir_all(root.join("a dir/sub")).unwrap();
    std::fs::create_dir_all(root.join("sticky")).unwrap();
    std::fs::write(root.join("usr/local/bin/flynn-host.v1"), "#!/bin/sh\necho v1\n").unwrap();
    chmod(&root.join("usr/local/bin/flynn-host.v1"), 0o755);
    symlink("flynn-host.v1", root.join("usr/local/bin/flynn-host")).unwrap();
    symlink("../x y", root.join("a dir/link with space")).unwrap();
    symlink("nowhere", root.join("dangling")).unwrap();
    std::fs::write(root.join("a dir/sub/with space\tand tab"), b"x").unwrap();
    std::fs::write(root.join("back\\slash"), b"").unwrap();
    std::fs::write(root.join("a-b"), b"order").unwrap();
    std::fs::write(root.join("a"), b"order").unwrap();
    chmod(&root.join("sticky"), 0o1777);
    chmod(&root.join("a dir/sub"), 0o700);
    chmod(&root, 0o755);
    let st = Command::new("mkfifo").arg(root.join("fifo")).status().unwrap();
    assert!(st.success());
    // A host's ETag cache is left out by both; its directory is not.
    std::fs::create_dir_all(root.join("etc/flynn/cache")).unwrap();
    std::fs::write(root.join("etc/flynn/cache/github-etags.json"), b"{}").unwrap();
    std::fs::write(root.join("etc/flynn/cache/github-etags.json.old"), b"{}").unwrap();

    let text = common::snapshot_text(&root);
    assert_eq!(text, script(&root));
    assert!(text.starts_with("d 755 - - - .\n"), "{text}");
    assert!(
        text.contains("l 777 - - flynn-host.v1 usr/local/bin/flynn-host\n"),
        "{text}"
    );
    assert!(
        text.contains("l 777 - - ../x\\sy a\\sdir/link\\swith\\sspace\n"),
        "{text}"
    );
    assert!(text.contains("d 1777 - - - sticky\n"), "{text}");
    assert!(text.contains(" etc/flynn/cache\n") && text.contains(" etc/flynn/cache/github-etags.json.old\n"));
    assert!(!text.contains(" etc/flynn/cache/github-etags.json\n"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("p ") && l.ends_with(" - - - fifo")),
        "{text}"
    );
    // The map form has the same lines without the root.
    let map = common::snapshot(&root);
    assert_eq!(map.len() + 1, text.lines().count());
    for line in map.values() {
        assert!(text.contains(&format!("{line}\n")), "{line}");
    }

    // A file, a symlink and a missing path.
    let file = root.join("usr/local/bin/flynn-host.v1");
    assert_eq!(common::snapshot_text(&file), script(&file));
    let link = root.join("usr/local/bin/flynn-host");
    assert_eq!(common::snapshot_text(&link), script(&link));
    let missing = root.join("missing");
    assert_eq!(common::snapshot_text(&missing), "");
    assert_eq!(script(&missing), "");
    assert!(common::snapshot(&missing).is_empty());
}
