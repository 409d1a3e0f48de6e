"""The course data, shipped inside labkit as package data: labkit.course.data (see labkit/course and README.md)."""
