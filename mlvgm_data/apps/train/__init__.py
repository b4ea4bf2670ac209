"""The trainers of the shipped generators (``mlvgm-data train --model NAME``) and what they share.

Layered top to bottom: :mod:`.registry` (the trainers by name, ``train(name, **options)``) →
the trainers :mod:`.hvae`, :mod:`.stylegan`, :mod:`.mlvae` → the skeleton :mod:`.loop`
(``run_training``) → the helpers :mod:`.data`, :mod:`.checkpoint`, :mod:`.outputs` and
:mod:`.options` (``Trainer``, the common options). Nothing here imports a module above it.
"""
