//! Shared model runtime (tract): placeholder until it lands.
