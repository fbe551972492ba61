"""``caloforge demo``: the whole chain on this machine, with the shipped model and the built-in
Monte Carlo: MC reference (+ an independent MC floor sample) -> GAN FP32 -> physics validation
-> INT8 tuning under the physics criterion -> validation of the tuned model -> benchmark
(FP32 vs INT8 vs tuned, single vs multistream, MC) -> ``report.md`` with the case study's two
figures and ``demo.json`` with every number. See ``docs/demo.md``.

    from caloforge.demo import run_demo
    demo = run_demo("caloforge-demo", quick=True)      # returns demo.json's content
"""

from caloforge.demo.pipeline import run_demo
from caloforge.demo.settings import DEFAULT, QUICK, DemoSettings, reference_energies, settings_for

__all__ = ["DEFAULT", "QUICK", "DemoSettings", "reference_energies", "run_demo", "settings_for"]
