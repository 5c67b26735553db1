from curator_svc.finetune.cli import main

main()
