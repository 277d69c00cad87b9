"""nbgrader configuration for the rice-lab course; run nbgrader commands from this folder."""

c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)

c.CourseDirectory.course_id = "rice-lab"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback"]

# Exercise stubs learners see in place of each solution region.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Execution while autograding: every cell gets `timeout` seconds, then the kernel is interrupted and
# grading goes on with the next cell; a grader-side wall clock (python -m autograder grade) backs it up.
c.Execute.timeout = 60
c.Execute.interrupt_on_timeout = True
c.Execute.startup_timeout = 120
c.LimitOutput.max_lines = 200
c.LimitOutput.max_traceback = 60

# A learner who deletes a test cell is still graded on it: nbgrader puts it back.
c.OverwriteCells.add_missing_cells = True

# After locked cells are restored, answer cells that touch the autograder or the import system are
# replaced by a `raise` (autograder/audit.py), before any learner code runs.
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "nbgrader.preprocessors.OverwriteCells",
    "autograder.audit.RejectTampering",
    "nbgrader.preprocessors.CheckCellMetadata",
]
