from cnnctl.cli import main

main()
