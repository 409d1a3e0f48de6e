"""Grading a class: blank copies (``student``), reading notebooks (``notebook``), the sandbox and
its budget (``sandbox``, ``budget``), the job inside it (``job``) and the harvest its kernel runs
(``harvest``, ``outcomes``), judging (``judge``, ``child``), the static reuse check (``reuse``,
``registry``), typed verdicts (``verdict``) and the command line (``cli``).

The course modules never import this package. Nothing is imported here: the job inside the
sandbox loads ``job.py`` as a script, and the harvest loads what it needs itself.
"""
