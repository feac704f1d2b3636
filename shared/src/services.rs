//! The services YAML file. (to be written)
