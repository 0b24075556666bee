"""nbgrader's configuration for this course (docs/instructors.md, "With nbgrader").

Run nbgrader from the repository root, through make so that the venv's programs are on PATH
(nbgrader calls `alembic` by name):

    make nbgrader-source NB="04"                          # instructor/nbgrader/source/04_lenet5/04_lenet5.ipynb
    make nbgrader ARGS="generate_assignment 04_lenet5"    # -> instructor/nbgrader/release/04_lenet5/
    make nbgrader ARGS="zip_collect 04_lenet5"            # or collect: -> instructor/nbgrader/submitted/<student>/
    make nbgrader ARGS="autograde 04_lenet5"              # -> instructor/nbgrader/autograded/, gradebook.db
    make nbgrader ARGS="generate_feedback 04_lenet5"      # -> instructor/nbgrader/feedback/

One assignment per notebook, named after it. The notebooks already carry nbgrader's cell metadata
(tools/notebooks.py writes it), so `generate_assignment` needs no further markup.
"""

import os

c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)

c.CourseDirectory.course_id = "vlp-course"
c.CourseDirectory.root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "instructor", "nbgrader")
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(c.CourseDirectory.root, "gradebook.db")

# Autograding runs every notebook top to bottom. The course's longest training cell takes about
# 40 s on a 2-core CPU and up to three times that on a loaded machine: 600 s per cell leaves room and
# still stops a loop that never ends. A cell that runs past it is interrupted and the run goes on.
c.Execute.timeout = 600
c.Execute.interrupt_on_timeout = True
c.Execute.startup_timeout = 120
c.Execute.iopub_timeout = 60  # the wait for a finished cell's last outputs, on a busy machine

# Grading runs offline and without progress bars (kernels inherit this environment).
for name, value in {"VLP_COURSE_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                    "MPLBACKEND": "Agg", "TQDM_DISABLE": "1"}.items():
    os.environ.setdefault(name, value)
