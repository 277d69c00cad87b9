"""The checks of each assignment, one module per assignment (registered in autograder/course.py)."""
