"""A study for people: plots, report.md / report.html, the documents of validate and advise, the W&B summary
run, and optuna-dashboard on a study (`dashboard`). Writes what evidence/ decided; decides nothing itself.
May import every layer below it: config/, runtime/, data/, metrics/, trial/, search/, evidence/."""
