pub mod list;
pub mod retired;
pub mod vector;

#[cfg(test)]
mod deferred_tests;
