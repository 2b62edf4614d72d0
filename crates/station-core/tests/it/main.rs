//! Integration tests of station-core: the runner contract and the data model's wire shape.

mod model;
mod runner;
