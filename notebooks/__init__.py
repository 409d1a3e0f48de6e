"""The solved notebooks, shipped inside labkit as package data: labkit.course.notebooks (see labkit/course)."""
