"""Verdicts that say what they judged: every step judged against the noise envelope, inconclusive
where the dynamics amplify rounding beyond any tolerance, never agreement from judging nothing."""
import json

from compare import Spec, check
from compare import tolerances as tol
from compare.cli import main


def test_a_stable_run_is_judged_at_every_step_with_the_envelope_reported():
    res, traj = check("manual", "torch", Spec(epochs=30, optimizer="adam", lr=0.01, activation="relu",
                                              hidden=(8, 8), batch_size=10, dropout=0.2))
    assert res.verdict == "agree" and res.judged_steps == res.steps == 360
    assert traj.judged.all() and (traj.allowance[1:] < 1e-9).all()
    assert set(traj.noise) == {"candidate", "reference"}  # a noise run on each side
    d = res.to_dict()
    assert d["trajectory"]["steps"] == 360 and d["trajectory"]["judged_steps"] == 360
    assert len(d["per_step"]["judged"]) == 361 and all(d["per_step"]["judged"])


def test_gd_at_the_edge_of_stability_is_inconclusive_not_agreement(capsys):
    """Raw iris, GD at lr 0.5: the noise runs themselves pass 1e-3 after ~70 steps on both sides."""
    code = main(["check", "--lr", "0.5", "--epochs", "150", "--json", "-"])
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert code == 3 and data["verdict"] == "inconclusive" and data["agree"] is False
    assert 0 < data["judged_steps"] < 75 and data["steps"] == 150
    first_unjudged = data["per_step"]["judged"].index(False)
    assert data["per_step"]["envelope"][first_unjudged] > tol.ENVELOPE_LIMIT
    assert f"judged {data['judged_steps']} of 150 steps: from step {first_unjudged} on" in data["reason"]


def test_the_same_run_judged_long_enough_agrees_and_says_how_much_it_judged(capsys):
    code = main(["check", "--lr", "0.5", "--epochs", "130"])
    out, err = capsys.readouterr()
    last = out.strip().splitlines()[-1]
    assert code == 0 and last.startswith("AGREE: manual (candidate) vs torch (reference), judged ")
    assert "of 130 training steps" in last and "not judged: the noise envelope passes" in out


def test_no_step_is_inconclusive_with_a_clear_message(capsys):
    code = main(["check", "--epochs", "0"])
    out, err = capsys.readouterr()
    assert code == 3 and "INCONCLUSIVE" in out and "no training step was run (epochs = 0)" in out
