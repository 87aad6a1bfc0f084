// The infra scripts' Kafka admin client: Kafka's own Admin API (kafka-clients), one JVM per call.
// Compiled once by infra/install.sh into the versioned Kafka cache; run by infra/lib.sh's at_kafka_admin.
//
//   health  BOOTSTRAP NODES          metadata answered by NODES brokers, a probe topic created
//                                    (replicated on min(NODES, 3) brokers) and deleted again
//   topics  BOOTSTRAP TSV PREFIX RF  create every topic of TSV (name, partitions, retention_ms) under
//                                    PREFIX with replication factor RF (-1: the broker's default);
//                                    idempotent; a different partition count is an error; prints a table
//   delete  BOOTSTRAP PREFIX         delete every topic whose name starts with PREFIX (not empty)
//   leaders BOOTSTRAP TOPIC          one line per partition: partition, leader id, ISR ids
//   users   BOOTSTRAP FILE           create or update the SCRAM-SHA-256 credentials of FILE's
//                                    "USER PASSWORD" lines (a private file: never on a command line)
//   grant   BOOTSTRAP TSV PREFIX     create the ACLs of TSV (infra/kafka-acls.tsv) for the topics under
//                                    PREFIX, except its {service} template rows; idempotent
//   service BOOTSTRAP TSV PREFIX ID PASSWORD_FILE
//                                    the service principal at-service-ID: its SCRAM credential (the
//                                    password read from PASSWORD_FILE) and TSV's {service} rows for ID
//                                    on the topics under PREFIX; idempotent
//
// The client's security settings (SASL over TLS as the super user) come from the properties file named
// by AT_KAFKA_ADMIN_PROPERTIES (written by infra/start.sh, mode 0600), when set.
//
// Exit codes: 0 done, 1 the broker refused or did not answer, 2 usage.
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialAlteration;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;

public final class KafkaAdmin {
    private static final long TIMEOUT_S = 15;

    public static void main(String[] args) {
        if (args.length < 2) {
            usage();
        }
        Properties props = new Properties();
        String secure = System.getenv("AT_KAFKA_ADMIN_PROPERTIES");
        if (secure != null && !secure.isEmpty()) {
            try (var in = Files.newBufferedReader(Path.of(secure))) {
                props.load(in);
            } catch (Exception e) {
                fail("cannot read AT_KAFKA_ADMIN_PROPERTIES " + secure + ": " + e);
            }
        }
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[1]);
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "5000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "10000");
        props.put(AdminClientConfig.RETRY_BACKOFF_MS_CONFIG, "100");
        try (Admin admin = Admin.create(props)) {
            switch (args[0]) {
                case "health" -> health(admin, intArg(args, 2));
                case "topics" -> {
                    if (args.length != 5) usage();
                    topics(admin, Path.of(args[2]), args[3], (short) intArg(args, 4));
                }
                case "delete" -> {
                    if (args.length != 3 || args[2].isEmpty()) usage();
                    delete(admin, args[2]);
                }
                case "leaders" -> {
                    if (args.length != 3) usage();
                    leaders(admin, args[2]);
                }
                case "users" -> {
                    if (args.length != 3) usage();
                    users(admin, Path.of(args[2]));
                }
                case "grant" -> {
                    if (args.length != 4) usage();
                    grant(admin, Path.of(args[2]), args[3], null);
                }
                case "service" -> {
                    if (args.length != 6) usage();
                    service(admin, Path.of(args[2]), args[3], args[4], Path.of(args[5]));
                }
                default -> usage();
            }
        } catch (ExecutionException e) {
            fail(e.getCause() == null ? e.toString() : e.getCause().toString());
        } catch (Exception e) {
            fail(e.toString());
        }
    }

    private static void health(Admin admin, int nodes) throws Exception {
        var cluster = admin.describeCluster();
        var brokers = cluster.nodes().get(TIMEOUT_S, TimeUnit.SECONDS);
        if (brokers.size() < nodes) {
            fail("metadata lists " + brokers.size() + " of " + nodes + " brokers");
        }
        // Creatable topics: the controller quorum and enough brokers for a replicated topic.
        String probe = "__at-health-" + Long.toHexString(System.nanoTime());
        short rf = (short) Math.min(nodes, 3);
        admin.createTopics(List.of(new NewTopic(probe, 1, rf))).all().get(TIMEOUT_S, TimeUnit.SECONDS);
        admin.deleteTopics(List.of(probe)).all().get(TIMEOUT_S, TimeUnit.SECONDS);
        System.out.println("brokers " + brokers.stream().map(Node::idString).sorted()
            .collect(Collectors.joining(",")) + ", controller "
            + cluster.controller().get(TIMEOUT_S, TimeUnit.SECONDS).idString());
    }

    private record Row(String name, int partitions, String retentionMs) {}

    private static void topics(Admin admin, Path tsv, String prefix, short rf) throws Exception {
        if (!prefix.matches("[A-Za-z0-9._-]{0,100}")) {
            fail("bad prefix '" + prefix + "': Kafka topic names allow only [A-Za-z0-9._-]");
        }
        List<Row> rows = new ArrayList<>();
        for (String line : Files.readAllLines(tsv)) {
            String t = line.strip();
            if (t.isEmpty() || t.startsWith("#")) continue;
            String[] cols = line.split("\t");
            if (cols.length != 3 || !cols[1].matches("[0-9]+") || !cols[2].matches("-?[0-9]+")) {
                fail(tsv + ": bad line '" + line + "'");
            }
            rows.add(new Row(prefix + cols[0], Integer.parseInt(cols[1]), cols[2]));
        }
        Map<String, String> status = new HashMap<>();
        List<NewTopic> create = new ArrayList<>();
        for (Row r : rows) {
            // Delete, never compact: the folded control topics keep every record (first writer wins,
            // sticky revocations), and the others expire by age.
            create.add(new NewTopic(r.name, Optional.of(r.partitions), rf == -1 ? Optional.empty() : Optional.of(rf))
                .configs(Map.of("cleanup.policy", "delete", "retention.ms", r.retentionMs)));
        }
        var result = admin.createTopics(create);
        for (var e : result.values().entrySet()) {
            try {
                e.getValue().get(TIMEOUT_S, TimeUnit.SECONDS);
                status.put(e.getKey(), "created");
            } catch (ExecutionException ex) {
                if (ex.getCause() instanceof TopicExistsException) {
                    status.put(e.getKey(), "exists");
                } else {
                    fail("creating " + e.getKey() + " failed: " + ex.getCause());
                }
            }
        }
        Map<String, TopicDescription> have = admin.describeTopics(rows.stream().map(Row::name).toList())
            .allTopicNames().get(TIMEOUT_S, TimeUnit.SECONDS);
        boolean bad = false;
        System.out.printf("%-44s %10s %8s %14s  %s%n", "topic", "partitions", "replicas", "retention.ms", "status");
        for (Row r : rows) {
            TopicDescription d = have.get(r.name);
            int parts = d.partitions().size();
            int replicas = d.partitions().get(0).replicas().size();
            String note = status.get(r.name);
            if (parts != r.partitions) {
                note += ", BROKER HAS " + parts + " PARTITIONS";
                bad = true;
            }
            System.out.printf("%-44s %10d %8d %14s  %s%n", r.name, r.partitions, replicas, r.retentionMs, note);
        }
        if (bad) fail("some topics exist with another partition count (delete them or use another prefix)");
    }

    private static void delete(Admin admin, String prefix) throws Exception {
        Set<String> names = admin.listTopics().names().get(TIMEOUT_S, TimeUnit.SECONDS).stream()
            .filter(n -> n.startsWith(prefix)).collect(Collectors.toSet());
        if (!names.isEmpty()) {
            admin.deleteTopics(names).all().get(60, TimeUnit.SECONDS);
        }
        System.out.println("deleted " + names.size() + " topics starting with '" + prefix + "'");
    }

    private static void leaders(Admin admin, String topic) throws Exception {
        TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames()
            .get(TIMEOUT_S, TimeUnit.SECONDS).get(topic);
        for (TopicPartitionInfo p : d.partitions()) {
            System.out.println(p.partition() + "\t" + (p.leader() == null ? "none" : p.leader().idString()) + "\t"
                + p.isr().stream().map(Node::idString).collect(Collectors.joining(",")));
        }
    }

    private static void users(Admin admin, Path file) throws Exception {
        List<UserScramCredentialAlteration> upserts = new ArrayList<>();
        for (String line : Files.readAllLines(file)) {
            String[] cols = line.strip().split("\\s+");
            if (cols.length == 1 && cols[0].isEmpty()) continue;
            if (cols.length != 2) fail(file + ": expected lines 'USER PASSWORD'");
            upserts.add(new UserScramCredentialUpsertion(cols[0],
                new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192), cols[1]));
        }
        admin.alterUserScramCredentials(upserts).all().get(TIMEOUT_S, TimeUnit.SECONDS);
        System.out.println("SCRAM credentials set for " + upserts.size() + " users");
    }

    private static final String SERVICE = "{service}";

    private static void service(Admin admin, Path tsv, String prefix, String id, Path passwordFile)
            throws Exception {
        if (!id.matches("[A-Za-z0-9._-]{1,100}")) {
            fail("bad service id '" + id + "': [A-Za-z0-9._-], at most 100");
        }
        String password = Files.readString(passwordFile).strip();
        if (password.isEmpty()) fail(passwordFile + " is empty");
        admin.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion("at-service-" + id,
            new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192), password)))
            .all().get(TIMEOUT_S, TimeUnit.SECONDS);
        grant(admin, tsv, prefix, id);
    }

    // service == null: every row but the {service} templates; otherwise only those, for that id.
    private static void grant(Admin admin, Path tsv, String prefix, String service) throws Exception {
        if (!prefix.matches("[A-Za-z0-9._-]{0,100}")) {
            fail("bad prefix '" + prefix + "': Kafka topic names allow only [A-Za-z0-9._-]");
        }
        List<AclBinding> acls = new ArrayList<>();
        for (String line : Files.readAllLines(tsv)) {
            String t = line.strip();
            if (t.isEmpty() || t.startsWith("#")) continue;
            if (line.contains(SERVICE) != (service != null)) continue;
            String[] cols = (service == null ? line : line.replace(SERVICE, service)).split("\t");
            if (cols.length != 4) fail(tsv + ": bad line '" + line + "'");
            // A group name ending in * is a prefix of the group ids allowed; otherwise one group id.
            boolean groupPrefix = cols[2].endsWith("*");
            String group = groupPrefix ? cols[2].substring(0, cols[2].length() - 1) : cols[2];
            ResourcePattern resource = switch (cols[1]) {
                case "topic" -> new ResourcePattern(ResourceType.TOPIC, prefix + cols[2], PatternType.LITERAL);
                case "group" -> new ResourcePattern(ResourceType.GROUP, group,
                    groupPrefix ? PatternType.PREFIXED : PatternType.LITERAL);
                default -> {
                    fail(tsv + ": unknown resource '" + cols[1] + "'");
                    yield null;
                }
            };
            for (String op : cols[3].split(",")) {
                AclOperation operation;
                try {
                    operation = AclOperation.valueOf(op.strip());
                } catch (IllegalArgumentException e) {
                    fail(tsv + ": unknown operation '" + op + "'");
                    return;
                }
                acls.add(new AclBinding(resource,
                    new AccessControlEntry("User:" + cols[0], "*", operation, AclPermissionType.ALLOW)));
            }
        }
        admin.createAcls(acls).all().get(TIMEOUT_S, TimeUnit.SECONDS);
        System.out.println(acls.size() + " ACLs in place for prefix '" + prefix + "'"
            + (service == null ? "" : " and service '" + service + "'"));
    }

    private static int intArg(String[] args, int i) {
        if (args.length <= i) usage();
        try {
            return Integer.parseInt(args[i]);
        } catch (NumberFormatException e) {
            usage();
            return 0;
        }
    }

    private static void usage() {
        System.err.println("usage: KafkaAdmin health BOOTSTRAP NODES | topics BOOTSTRAP TSV PREFIX RF"
            + " | delete BOOTSTRAP PREFIX | leaders BOOTSTRAP TOPIC | users BOOTSTRAP FILE"
            + " | grant BOOTSTRAP TSV PREFIX | service BOOTSTRAP TSV PREFIX ID PASSWORD_FILE");
        System.exit(2);
    }

    private static void fail(String why) {
        System.err.println("KafkaAdmin: " + why);
        System.exit(1);
    }
}
