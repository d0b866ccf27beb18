//! The technician device library (client SDK issue).
