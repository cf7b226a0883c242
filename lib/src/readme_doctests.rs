//! README.md's code blocks as doc tests: filled by the adoption work (issue 15).
