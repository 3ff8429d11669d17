from ocrtune_trainer.main import run

run()
