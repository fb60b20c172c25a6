r"""Trains a CNN from a config, resuming from the last checkpoint in --workdir if there is one.

  python train.py --config=configs/lenet5.py --workdir=runs/lenet5
  python train.py --config=configs/lenet5.py --config.batch_size=256 --workdir=runs/lenet5_b256

As one of several processes (README, "Multi-GPU and multi-host"): under SLURM's srun, Open MPI or
on a multi-host TPU slice nothing more is needed; elsewhere start the same command on every host
with --coordinator_address=HOST:PORT --num_processes=N --process_id=I.

Exit status: 0 done; 2 a user or environment error (one line); 3 diverged (non-finite loss or
parameters; nothing non-finite saved); 75 stopped by SIGTERM/SIGINT/SIGHUP or a preemption notice
after saving the current step: rerun the same command to resume.
"""

from absl import app

from app import cli, loop

cli.define_flags()


def main(argv):
  cli.start(argv)
  cli.run_reporting_errors(loop.train_and_evaluate, cli.FLAGS.config, cli.FLAGS.workdir)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
