"""nbgrader configuration for the rice-lab course; run nbgrader commands from this folder."""

import os
from pathlib import Path

c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)
HERE = Path(__file__).resolve().parent  # traitlets defines __file__ while it runs this file

c.CourseDirectory.course_id = "rice-lab"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback"]

# A course-local exchange, so that release, fetch, submit and collect work out of the box (the formgrader
# offers them only when this folder exists). On a shared server, point RICE_LAB_EXCHANGE at a folder every
# learner can write to; learners then fetch with --Exchange.root set to the same folder.
EXCHANGE = Path(os.environ.get("RICE_LAB_EXCHANGE") or HERE / "exchange")
if not EXCHANGE.is_dir():
    EXCHANGE.mkdir(parents=True, exist_ok=True)
    EXCHANGE.chmod(0o1777)  # like /usr/local/share/nbgrader/exchange: everyone writes, nobody deletes others'
c.Exchange.root = str(EXCHANGE)

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
    "autograder.audit.ForgetUnknownCells",
    "nbgrader.preprocessors.OverwriteCells",
    "autograder.audit.RejectTampering",
    "nbgrader.preprocessors.CheckCellMetadata",
]

# The notebook's cells run in order in one contained process (autograder/sandbox.py: memory, CPU time,
# processes, file size, no network, read-only course files) in place of a kernel; every test cell's checks
# run in the grading process instead, calling the notebook's functions in the contained one, and their
# verdicts become the test cells' outputs (autograder/grading.py). nbgrader scores those as usual.
c.Autograde.autograde_preprocessors = [
    "autograder.grading.ContainedExecute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.GradingSandbox.memory = "4GiB"
c.GradingSandbox.cpu_seconds = 1800
c.GradingSandbox.processes = 256
c.GradingSandbox.max_output = "8MiB"
