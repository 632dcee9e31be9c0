"""Flow-rule reduction (issue 9): install coarser rules at core vswitches only where proven equal.

`headerspace` is the set algebra the proofs run on: ternary OpenFlow matches as cubes, unions
of them, and the "does every packet of this region get the same fate" question.
"""
