// Mono's (or .NET's) own BinaryFormatter on both sides of copydata's nrbf codec, for tests/test_nrbf.py.
//
//   mono NrbfProbe.exe serialize DIR          writes DIR/NAME.bin for every case of Cases()
//   mono NrbfProbe.exe deserialize FILE ...   prints one JSON line per file: its name and what
//                                             BinaryFormatter made of it, every type spelled out
//
// Compiled by tools/dotnet.py with mcs; the tests start it from Windows Python under Wine.
using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Runtime.Serialization;
using System.Runtime.Serialization.Formatters.Binary;
using System.Text;

namespace NrbfProbe
{
    public enum Color { Red = 1, Green = 2, Blue = 40 }

    [Serializable]
    public class Node
    {
        public string Name;
        public Node Next;
        public int[] Values;
    }

    [Serializable]
    public class Person
    {
        public string Name;
        public int Age;
        public double Height;
        public bool Admin;
        public DateTime Born;
        public Guid Id;
        public decimal Balance;
        public Color Favourite;
        public List<string> Tags;
        public object Extra;
    }

    [Serializable]
    public class Employee : Person
    {
        public string Team;
    }

    // What tests/test_nrbf_dotnet.py sends from Python as a DotNetObject, one member of each kind.
    [Serializable]
    public class Sample
    {
        public string Name;
        public int Count;
        public long Big;
        public double Ratio;
        public bool Flag;
        public decimal Money;
        public DateTime When;
        public TimeSpan Span;
        public Guid Id;
        public byte[] Blob;
        public string[] Names;
        public int[] Numbers;
        public object[] Things;
        public Hashtable Table;
        public object Anything;
        public Sample Child;
    }

    public static class Program
    {
        static IEnumerable<KeyValuePair<string, object>> Cases()
        {
            yield return Case("hello", "Hello World!");
            yield return Case("empty_string", "");
            yield return Case("unicode_string", "h\u00e9llo \u20ac \U0001F600");
            yield return Case("int32", 42);
            yield return Case("int32_min", int.MinValue);
            yield return Case("int64", -9000000000L);
            yield return Case("int16", (short)-1234);
            yield return Case("byte", (byte)200);
            yield return Case("sbyte", (sbyte)-100);
            yield return Case("uint16", (ushort)65535);
            yield return Case("uint32", 4000000000u);
            yield return Case("uint64", 18446744073709551615ul);
            yield return Case("bool", true);
            yield return Case("char", '\u00e9');
            yield return Case("double", 0.1);
            yield return Case("single", 1.5f);
            yield return Case("decimal", 12345.678m);
            yield return Case("decimal_negative", -0.5m);
            yield return Case("datetime_utc", new DateTime(2013, 7, 11, 12, 30, 45, 123, DateTimeKind.Utc).AddTicks(4560));
            yield return Case("datetime_unspecified", new DateTime(1999, 12, 31, 23, 59, 59, DateTimeKind.Unspecified));
            yield return Case("timespan", new TimeSpan(1, 2, 3, 4, 5));
            yield return Case("timespan_negative", TimeSpan.FromTicks(-15));
            yield return Case("guid", new Guid("00112233-4455-6677-8899-aabbccddeeff"));
            yield return Case("enum", Color.Blue);
            yield return Case("system_enum", DayOfWeek.Friday);
            yield return Case("byte_array", new byte[] { 0, 1, 2, 254, 255 });
            yield return Case("int_array", new int[] { 1, -2, 3 });
            yield return Case("double_array", new double[] { 0.5, -1e300 });
            yield return Case("string_array", new string[] { "a", null, "b", "a" });
            yield return Case("object_array", new object[] { 1, "two", 3.0, null, null, true, new int[] { 4 } });
            yield return Case("jagged_array", new int[][] { new int[] { 1, 2 }, new int[0], new int[] { 3 } });
            yield return Case("rectangular_array", new int[,] { { 1, 2, 3 }, { 4, 5, 6 } });
            yield return Case("sparse_array", new object[300]);
            yield return Case("list_int", new List<int> { 1, 2, 3 });
            yield return Case("list_string", new List<string> { "x", "y" });
            yield return Case("list_object", new List<object> { 1, "a", null });
            yield return Case("list_empty", new List<double>());
            yield return Case("dictionary", new Dictionary<string, int> { { "one", 1 }, { "two", 2 } });
            yield return Case("dictionary_empty", new Dictionary<string, int>());
            yield return Case("dictionary_int_keys", new Dictionary<int, string> { { 1, "one" }, { -5, "minus five" } });
            yield return Case("dictionary_nested", new Dictionary<string, List<int>> { { "primes", new List<int> { 2, 3, 5 } } });
            Hashtable table = new Hashtable();
            table["k"] = "v";
            table[7] = 1.25;
            yield return Case("hashtable", table);
            Node loop = new Node { Name = "loop", Values = new int[] { 1, 2 } };
            loop.Next = loop;
            yield return Case("self_reference", loop);
            Node shared = new Node { Name = "shared" };
            yield return Case("shared_reference", new object[] { shared, shared, new Node { Name = "other", Next = shared } });
            List<object> list = new List<object>();
            list.Add(list);
            yield return Case("list_cycle", list);
            yield return Case("person", new Person {
                Name = "Ada", Age = 36, Height = 1.65, Admin = true,
                Born = new DateTime(1815, 12, 10, 0, 0, 0, DateTimeKind.Utc),
                Id = new Guid("12345678-9abc-def0-1234-56789abcdef0"), Balance = 1.50m,
                Favourite = Color.Green, Tags = new List<string> { "math" }, Extra = 5L });
            yield return Case("employee", new Employee { Name = "Bob", Team = "ops", Tags = null });
        }

        static KeyValuePair<string, object> Case(string name, object value)
        {
            return new KeyValuePair<string, object>(name, value);
        }

        static int Serialize(string folder)
        {
            Directory.CreateDirectory(folder);
            BinaryFormatter formatter = new BinaryFormatter();
            foreach (KeyValuePair<string, object> item in Cases())
            {
                using (MemoryStream stream = new MemoryStream())
                {
                    formatter.Serialize(stream, item.Value);  // as the seed's NativeDataTransfer.Transfer does
                    File.WriteAllBytes(Path.Combine(folder, item.Key + ".bin"), stream.ToArray());
                }
            }
            return 0;
        }

        static int Deserialize(string[] files)
        {
            BinaryFormatter formatter = new BinaryFormatter();
            foreach (string file in files)
            {
                string name = Path.GetFileNameWithoutExtension(file);
                StringBuilder line = new StringBuilder();
                try
                {
                    object value;
                    using (MemoryStream stream = new MemoryStream(File.ReadAllBytes(file)))
                        value = formatter.Deserialize(stream);  // as the seed's NativeReceiveDataSink does
                    line.Append("{\"name\":").Append(Quote(name)).Append(",\"value\":");
                    new Describer(line).Describe(value);
                    line.Append("}");
                }
                catch (Exception error)
                {
                    line.Clear();
                    line.Append("{\"name\":").Append(Quote(name)).Append(",\"error\":")
                        .Append(Quote(error.GetType().FullName + ": " + error.Message)).Append("}");
                }
                Console.WriteLine(line.ToString());
            }
            return 0;
        }

        public static string Quote(string text)
        {
            StringBuilder quoted = new StringBuilder("\"");
            foreach (char c in text)
            {
                if (c == '"' || c == '\\') quoted.Append('\\').Append(c);
                else if (c < 0x20 || c > 0x7e) quoted.AppendFormat("\\u{0:x4}", (int)c);
                else quoted.Append(c);
            }
            return quoted.Append('"').ToString();
        }

        public static int Main(string[] args)
        {
            if (args.Length == 2 && args[0] == "serialize")
                return Serialize(args[1]);
            if (args.Length >= 1 && args[0] == "deserialize")
            {
                string[] files = new string[args.Length - 1];
                Array.Copy(args, 1, files, 0, files.Length);
                return Deserialize(files);
            }
            Console.Error.WriteLine("usage: NrbfProbe.exe serialize DIR | deserialize FILE ...");
            return 2;
        }
    }

    // A value as JSON: {"type": its .NET type's full name, "value": ...}. Objects already described
    // are {"ref": n}, n counting described reference objects from 1, so cycles end.
    class Describer
    {
        readonly StringBuilder output;
        readonly ObjectIDGenerator seen = new ObjectIDGenerator();

        public Describer(StringBuilder output) { this.output = output; }

        public void Describe(object value)
        {
            if (value == null) { output.Append("null"); return; }
            Type type = value.GetType();
            if (!type.IsValueType && !(value is string))
            {
                bool first;
                long id = seen.GetId(value, out first);
                if (!first) { output.Append("{\"ref\":").Append(id).Append("}"); return; }
            }
            output.Append("{\"type\":").Append(Program.Quote(type.FullName)).Append(",\"value\":");
            DescribeValue(value, type);
            output.Append("}");
        }

        void DescribeValue(object value, Type type)
        {
            CultureInfo invariant = CultureInfo.InvariantCulture;
            if (value is string) output.Append(Program.Quote((string)value));
            else if (value is bool) output.Append((bool)value ? "true" : "false");
            else if (value is char) output.Append((int)(char)value);
            else if (value is double) output.Append(BitConverter.DoubleToInt64Bits((double)value));
            else if (value is float) output.Append(BitConverter.DoubleToInt64Bits((float)value));
            else if (value is decimal) output.Append(Program.Quote(((decimal)value).ToString(invariant)));
            else if (value is DateTime)
                output.Append("{\"ticks\":").Append(((DateTime)value).Ticks).Append(",\"kind\":")
                      .Append(Program.Quote(((DateTime)value).Kind.ToString())).Append("}");
            else if (value is TimeSpan) output.Append(((TimeSpan)value).Ticks);
            else if (value is Guid) output.Append(Program.Quote(value.ToString()));
            else if (type.IsEnum) output.Append(Convert.ToInt64(value, invariant));
            else if (type.IsPrimitive) output.Append(Convert.ToString(value, invariant));
            else if (value is byte[]) output.Append(Program.Quote(BitConverter.ToString((byte[])value)));
            else if (value is IDictionary)
            {
                output.Append("[");
                bool first = true;
                foreach (DictionaryEntry entry in (IDictionary)value)
                {
                    output.Append(first ? "[" : ",[");
                    first = false;
                    Describe(entry.Key);
                    output.Append(",");
                    Describe(entry.Value);
                    output.Append("]");
                }
                output.Append("]");
            }
            else if (value is IEnumerable)
            {
                output.Append("[");
                bool first = true;
                foreach (object item in (IEnumerable)value)
                {
                    if (!first) output.Append(",");
                    first = false;
                    Describe(item);
                }
                output.Append("]");
            }
            else
            {
                output.Append("{");
                bool first = true;
                for (Type level = type; level != null && level != typeof(object); level = level.BaseType)
                {
                    foreach (var field in level.GetFields(System.Reflection.BindingFlags.Instance
                        | System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.NonPublic
                        | System.Reflection.BindingFlags.DeclaredOnly))
                    {
                        if (!first) output.Append(",");
                        first = false;
                        output.Append(Program.Quote(field.Name)).Append(":");
                        Describe(field.GetValue(value));
                    }
                }
                output.Append("}");
            }
        }
    }
}
