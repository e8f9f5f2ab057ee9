pub mod list;
pub mod vector;
