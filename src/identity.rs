//! Placeholder: filled in by the foundations work.
