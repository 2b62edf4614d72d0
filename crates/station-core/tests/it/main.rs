//! Integration tests of station-core: the runner contract and the data model's wire shape.

mod changes;
mod remote_changes;
mod model;
mod runner;
