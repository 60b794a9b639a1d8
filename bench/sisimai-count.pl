#!/usr/bin/perl
# The reference for bench/run: classify every message in a directory with Sisimai (the
# bounce analyser plainbounce is compared with), whole process, and print
# "FILES RECIPIENTS": how many files it recognised as bounces and how many recipients it
# found in them. Sisimai 4 (Debian's libsisimai-perl) has make(); Sisimai 5 calls it rise().
use strict;
use warnings;
use Sisimai;

my $dir = shift or die "usage: $0 DIRECTORY\n";
-d $dir or die "$0: $dir: not a directory\n";
my $method = Sisimai->can('rise') ? 'rise' : 'make';
my $data = Sisimai->$method($dir) // [];
my %files;
$files{ $_->origin }++ for @$data;
printf "%d %d\n", scalar(keys %files), scalar(@$data);
