//! Sekisho's end-to-end suite: one binary, one module per front door. Every test drives the
//! real `sekisho` binary against real peers (OpenSSH, FreeRDP, xrdp, QEMU, PostgreSQL).
//! A missing peer fails the test unless `SEKISHO_SKIP_PEERS=1` is set.

mod bundle;
mod cli;
mod cluster;
mod faults;
mod ledger;
mod object_storage;
mod operations;
mod player;
mod rdp;
mod rdp_admin_hour;
mod rdp_hostile;
mod rdp_load;
mod rdp_netns;
mod recording;
mod ssh;
mod supervised_vnc;
mod support;
mod typed_search;
mod vnc;
mod vnc_busy_hour;
mod web;
mod web_denials;
mod web_desk;
mod web_find;
mod web_player_controls;
