//! RDP transparent mode and distinct VDI desktops, in network namespaces the tests create.
