//! The virtio-win driver folders Windows Server 2022 amd64 takes, written out by hand so the tests
//! that build virtio-win-shaped media do not borrow the list from the code they check. Shared with
//! kiln-plan's tests through `#[path]`.

/// Top-level folders of a virtio-win ISO, each holding `<os>/<arch>/<name>.inf`.
pub const VIRTIO_DRIVERS: [&str; 9] = [
    "viostor",
    "vioscsi",
    "NetKVM",
    "Balloon",
    "vioserial",
    "pvpanic",
    "vioinput",
    "viorng",
    "qemupciserial",
];
