//! Decoding parsed KDL documents into the model: node readers, pipeline bodies, merging of
//! includes and the checks that need a whole pipeline.

pub(crate) mod body;
pub(crate) mod fast_kdl;
pub(crate) mod kdl_errors;
pub(crate) mod linux_install;
pub(crate) mod pipeline;
pub(crate) mod reader;
