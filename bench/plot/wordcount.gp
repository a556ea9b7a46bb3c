# bench/plot/wordcount.gp - keyed word count (STREAMING) against the bare C loop of the same
# run: wall clock (left) and per CPU-second (right).
set terminal pngcairo size 1400,560 font "DejaVu Sans,11"
set output outdir."/wordcount.png"
set multiplot layout 1,2 title "Keyed word count: M words/s, bare C loop vs engine without and with a checkpoint every second"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set yrange [0:*]
set key top right opaque
set bmargin 4
set title "wall clock"
set ylabel "M words/s"
plot datadir."/wordcount.dat" using 2:xtic(1) title "bare C loop (1 thread)" lc rgb "#999999", \
     "" using 3 title "engine" lc rgb "#4477aa", \
     "" using 4 title "engine, checkpoint every 1 s" lc rgb "#ee7733"
set title "per CPU-second"
set ylabel "M words per CPU-s"
plot datadir."/wordcount.dat" using 5:xtic(1) title "bare C loop (1 thread)" lc rgb "#999999", \
     "" using 6 title "engine" lc rgb "#4477aa", \
     "" using 7 title "engine, checkpoint every 1 s" lc rgb "#ee7733"
unset multiplot
