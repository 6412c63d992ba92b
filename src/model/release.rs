//! What a release consists of (docs/release-assets.md#asset-table): asset names, where each comes from in Flynn's build
//! tree, and where each goes on a host (docs/host-layout.md#host-layout). Packaging, verification and installation all
//! read this one table.

/// How an asset is used on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A gzipped binary installed as `<bin-dir>/<name>.<ver>` plus a symlink `<name>`.
    HostBinary(&'static str),
    /// A gzipped binary published for other platforms; never installed on a host.
    OtherPlatform,
    /// `images.json.gz`, installed as `<config-dir>/images.<ver>.json`.
    Images,
    /// `bootstrap-manifest.json.gz`, installed as `<config-dir>/bootstrap-manifest.json`.
    BootstrapManifest,
}

/// One gzipped component of a release built from Flynn's build tree.
#[derive(Debug, Clone, Copy)]
pub struct Component {
    /// The release asset name.
    pub asset: &'static str,
    /// The source file relative to the build directory.
    pub build_path: &'static str,
    /// Whether packaging fails without it.
    pub required: bool,
    /// What the host does with it.
    pub role: Role,
}

/// The gzipped components, in the order of docs/release-assets.md#asset-table. The build paths
/// are Flynn's (script/build-flynn, builder/export.go): the Windows CLIs have no `.exe` in
/// `build/bin/`, their assets do.
pub const COMPONENTS: [Component; 9] = [
    Component {
        asset: "flynn-host-linux-amd64.gz",
        build_path: "bin/flynn-host",
        required: true,
        role: Role::HostBinary("flynn-host"),
    },
    Component {
        asset: "flynn-init-linux-amd64.gz",
        build_path: "bin/flynn-init",
        // Flynn's daemon runs /usr/local/bin/flynn-init in every container.
        required: true,
        role: Role::HostBinary("flynn-init"),
    },
    Component {
        asset: "flynn-linux-amd64.gz",
        build_path: "bin/flynn-linux-amd64",
        required: false,
        role: Role::HostBinary("flynn-linux-amd64"),
    },
    Component {
        asset: "flynn-darwin-amd64.gz",
        build_path: "bin/flynn-darwin-amd64",
        required: false,
        role: Role::OtherPlatform,
    },
    Component {
        asset: "flynn-windows-amd64.exe.gz",
        build_path: "bin/flynn-windows-amd64",
        required: false,
        role: Role::OtherPlatform,
    },
    Component {
        asset: "flynn-linux-386.gz",
        build_path: "bin/flynn-linux-386",
        required: false,
        role: Role::OtherPlatform,
    },
    Component {
        asset: "flynn-windows-386.exe.gz",
        build_path: "bin/flynn-windows-386",
        required: false,
        role: Role::OtherPlatform,
    },
    Component {
        asset: "images.json.gz",
        build_path: "manifests/images.json",
        required: true,
        role: Role::Images,
    },
    Component {
        asset: "bootstrap-manifest.json.gz",
        build_path: "manifests/bootstrap-manifest.json",
        required: true,
        role: Role::BootstrapManifest,
    },
];

/// The squashfs layers archive.
pub const LAYERS_ASSET: &str = "layers.tar.gz";
/// Where Flynn's builder keeps the layers it builds (builder/build.go, builder/export.go):
/// `<layer-cache>/<id>.squashfs`. The default of packaging's layer cache.
pub const DEFAULT_LAYER_CACHE: &str = "/var/lib/flynn/layer-cache";
/// The checksums file.
pub const CHECKSUMS_ASSET: &str = "checksums.sha512";
/// The install script asset.
pub const INSTALL_SCRIPT_ASSET: &str = "install-flynn";
/// The symlink `flynn` points at this binary (the Linux CLI).
pub const CLI_LINK: (&str, &str) = ("flynn", "flynn-linux-amd64");

/// The component published under `asset`, if any.
pub fn component(asset: &str) -> Option<&'static Component> {
    COMPONENTS.iter().find(|c| c.asset == asset)
}

/// Go's names for this machine's OS and architecture (`linux`, `amd64`).
pub fn go_os_arch() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        other => other,
    };
    (std::env::consts::OS, arch)
}

/// `flynnrel-<os>-<arch>.gz`, the helper binary's asset name.
pub fn helper_asset_name(os: &str, arch: &str) -> String {
    format!("flynnrel-{os}-{arch}.gz")
}

/// The helper's asset name in releases made before the rename to `flynnrel` (still installable).
pub const LEGACY_HELPER_PREFIX: &str = "flynn-release-";

/// True for names of helper assets (any platform), including the pre-rename
/// `flynn-release-<os>-<arch>.gz`.
pub fn is_helper_asset(name: &str) -> bool {
    (name.starts_with("flynnrel-") || name.starts_with(LEGACY_HELPER_PREFIX)) && name.ends_with(".gz")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_spec() {
        let names: Vec<&str> = COMPONENTS.iter().map(|c| c.asset).collect();
        assert_eq!(
            names,
            [
                "flynn-host-linux-amd64.gz",
                "flynn-init-linux-amd64.gz",
                "flynn-linux-amd64.gz",
                "flynn-darwin-amd64.gz",
                "flynn-windows-amd64.exe.gz",
                "flynn-linux-386.gz",
                "flynn-windows-386.exe.gz",
                "images.json.gz",
                "bootstrap-manifest.json.gz"
            ]
        );
        assert_eq!(helper_asset_name("linux", "amd64"), "flynnrel-linux-amd64.gz");
        assert!(is_helper_asset("flynnrel-darwin-arm64.gz"));
        assert!(
            is_helper_asset("flynn-release-linux-amd64.gz"),
            "releases made before the rename"
        );
        assert_eq!(component("images.json.gz").unwrap().role, Role::Images);
        // Flynn's build names: no .exe in build/bin, the asset has one; only host and init required.
        assert_eq!(
            component("flynn-windows-amd64.exe.gz").unwrap().build_path,
            "bin/flynn-windows-amd64"
        );
        assert_eq!(
            component("flynn-windows-386.exe.gz").unwrap().build_path,
            "bin/flynn-windows-386"
        );
        let required: Vec<&str> = COMPONENTS
            .iter()
            .filter(|c| c.required && matches!(c.role, Role::HostBinary(_)))
            .map(|c| c.asset)
            .collect();
        assert_eq!(required, ["flynn-host-linux-amd64.gz", "flynn-init-linux-amd64.gz"]);
        for a in [
            "flynn-linux-386.gz",
            "flynn-windows-386.exe.gz",
            "flynn-darwin-amd64.gz",
        ] {
            assert_eq!(
                component(a).unwrap().role,
                Role::OtherPlatform,
                "{a} is never installed"
            );
        }
        assert!(component("layers.tar.gz").is_none());
    }
}
