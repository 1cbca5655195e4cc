//! The only code that calls the proxy (placeholder).
