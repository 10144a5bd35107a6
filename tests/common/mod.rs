//! Helpers shared by integration tests.
